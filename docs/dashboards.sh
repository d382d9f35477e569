#!/usr/bin/env bash
# Seeds the root project with a little marketplace data through the API, then runs
# the requests of docs/dashboards.md. Needs a running `trellis serve` (BASE, default
# http://127.0.0.1:8080), an admin token in TOKEN, curl and jq.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
: "${TOKEN:?set TOKEN to an admin token (trellis add-user … --role admin, then /auth/login)}"
post() { curl -sf -X POST "$BASE/api/$1" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$2" | jq -r .id; }
get() { curl -sf -G "$BASE$1" -H "authorization: Bearer $TOKEN" "${@:2}"; }

ada=$(post users '{"email":"ada@example.com","display_name":"Ada","role":"contractor"}')
bob=$(post users '{"email":"bob@example.com","display_name":"Bob","role":"contractor"}')
cy=$(post users '{"email":"cy@example.com","display_name":"Cy","role":"contractor"}')
acme=$(post organizations '{"name":"Acme","slug":"acme"}')
globex=$(post organizations '{"name":"Globex","slug":"globex"}')
rust=$(post skills '{"name":"Rust"}')
sql=$(post skills '{"name":"SQL"}')
design=$(post skills '{"name":"Design"}')
p1=$(post projects "{\"title\":\"Marketplace API\",\"client\":\"$acme\",\"status\":\"open\",\"budget\":\"5000\",\"skills\":[\"$rust\",\"$sql\"]}")
p2=$(post projects "{\"title\":\"Reporting\",\"client\":\"$acme\",\"status\":\"open\",\"budget\":\"1200\",\"skills\":[\"$sql\"]}")
p3=$(post projects "{\"title\":\"Brand refresh\",\"client\":\"$globex\",\"status\":\"open\",\"budget\":\"3000\",\"skills\":[\"$design\"]}")
p4=$(post projects "{\"title\":\"CLI tools\",\"client\":\"$globex\",\"status\":\"closed\",\"budget\":\"800\",\"skills\":[\"$rust\"]}")
for pair in "$p1 $ada 2026-11-02T10:00:00Z shortlisted" "$p1 $bob 2026-11-04T09:00:00Z submitted" \
            "$p2 $ada 2026-11-10T15:00:00Z submitted" "$p3 $cy 2026-11-11T08:30:00Z rejected" \
            "$p1 $cy 2026-11-16T12:00:00Z submitted"; do
  set -- $pair
  post applications "{\"project\":\"$1\",\"applicant\":\"$2\",\"submitted_at\":\"$3\",\"status\":\"$4\"}" >/dev/null
done

echo "## open projects per skill"
get /api/projects/aggregate --data-urlencode "group_by=skills" --data-urlencode "count=true" \
    --data-urlencode "filter=status = open" --data-urlencode "sort=-count" | jq -c .
get /api/skills --data-urlencode "fields=name" | jq -c '[.items[] | {id, name}]'
echo "## applications per status per week"
get /api/applications/aggregate --data-urlencode "group_by=submitted_at:week,status" --data-urlencode "count=true" | jq -c .
echo "## average budget per organization"
get /api/projects/aggregate --data-urlencode "group_by=client" --data-urlencode "avg=budget" \
    --data-urlencode "sum=budget" --data-urlencode "count=true" --data-urlencode "sort=-avg_budget" | jq -c .
