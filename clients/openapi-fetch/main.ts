// A client of the root project written against the types openapi-typescript
// generates from /openapi.json (src/api.d.ts, default flags), run by .ci/run
// against a served root project. No `any`, no casts: when the document is
// precise, plain TypeScript narrowing is all a client needs.
//
// Environment: TRELLIS_URL (e.g. http://127.0.0.1:8080) and TRELLIS_ADMIN_TOKEN
// (a token with the admin role, from `trellis token`).
import createClient from "openapi-fetch";
import type { paths } from "./api.js";

class Mismatch extends Error {}

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Mismatch(what);
}

// `expected` does not widen `T`: the compared value keeps the type the document gives it.
function equal<T>(actual: T, expected: NoInfer<T>, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Mismatch(`${what}: expected ${e}, got ${a}`);
}

function present<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new Mismatch(`${what}: missing`);
  return value;
}

function env(name: string): string {
  return present(process.env[name], `environment variable ${name}`);
}

const baseUrl = env("TRELLIS_URL");
const admin = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${env("TRELLIS_ADMIN_TOKEN")}` },
});
const anonymous = createClient<paths>({ baseUrl });

// Unique names, so the program can run twice against the same database.
const run = Date.now().toString(36);
const steps: string[] = [];
function step(name: string): void {
  steps.push(name);
  console.log(`-- ${name}`);
}

async function main(): Promise<void> {
  step("sign up a contractor (the role field takes its default)");
  const signup = await anonymous.POST("/auth/signup", {
    body: { email: `dev-${run}@example.com`, password: "correct horse battery", display_name: "Dev" },
  });
  const session = present(signup.data, `signup answered ${signup.response.status}`);
  equal(session.user.role, "contractor", "a new account's role");
  const contractor = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${session.access_token}` },
  });

  step("create an organization and a skill, leaving defaulted fields out");
  const orgRes = await admin.POST("/api/organizations", {
    body: { name: `Acme ${run}`, slug: `acme-${run}` },
  });
  const org = present(orgRes.data, `create organization answered ${orgRes.response.status}`);
  equal(org.verified, false, "organization.verified (default)");
  equal(orgRes.response.headers.get("ETag"), '"1"', "ETag of a new record");
  const skillRes = await admin.POST("/api/skills", { body: { name: `Rust ${run}` } });
  const skill = present(skillRes.data, `create skill answered ${skillRes.response.status}`);
  equal(skill.parent, null, "skill.parent (not set)");

  step("create three projects");
  const budgets = ["1200.00", "300.50", "75.00"];
  const projectIds: string[] = [];
  for (const [i, budget] of budgets.entries()) {
    const res = await admin.POST("/api/projects", {
      body: { title: `Project ${i} ${run}`, client: org.id, budget, skills: [skill.id] },
    });
    const project = present(res.data, `create project answered ${res.response.status}`);
    equal(project.remote, true, "project.remote (default)");
    equal(project.status, "draft", "project.status (the workflow's initial state)");
    equal(project.budget, budget, "project.budget (an exact decimal string)");
    // Typed reads: a ref is a string and a many a list of strings, with or without expand.
    const clientId: string = project.client;
    const skillIds: string[] = project.skills;
    equal(clientId, org.id, "project.client (a ref is its id)");
    equal(skillIds, [skill.id], "project.skills (a many is its ids)");
    const title: string = project.title;
    equal(title, `Project ${i} ${run}`, "project.title");
    projectIds.push(project.id);
  }
  const [first, second, third] = projectIds;
  check(first !== undefined && second !== undefined && third !== undefined, "three project ids");

  step("list with filter, sort, limit, count; then the next page by cursor");
  const filter = `client = '${org.id}' and budget >= 50`;
  const page1Res = await admin.GET("/api/projects", {
    params: { query: { filter, sort: "-budget", limit: 2, count: true } },
  });
  const page1 = present(page1Res.data, `list answered ${page1Res.response.status}`);
  equal(page1.total, 3, "total with count=true");
  equal(page1.items.map((p) => p.budget), ["1200.00", "300.50"], "page 1 budgets, descending");
  const cursor = present(page1.next, "page 1's next cursor");
  const page2Res = await admin.GET("/api/projects", {
    params: { query: { filter, sort: "-budget", limit: 2, after: cursor } },
  });
  const page2 = present(page2Res.data, `list page 2 answered ${page2Res.response.status}`);
  equal(page2.items.map((p) => p.id), [third], "page 2 ids");
  equal(page2.next, null, "page 2's next cursor");

  step("expand a ref and a many; read fields of the expanded records");
  const expandedRes = await admin.GET("/api/projects/{id}", {
    params: { path: { id: first }, query: { expand: "client,skills" } },
  });
  const expanded = present(expandedRes.data, `read answered ${expandedRes.response.status}`);
  equal(expanded.client, org.id, "the ref stays its id with expand=client");
  const client = present(expanded.expand?.client, "expand.client");
  const clientName: string = client.name;
  equal(clientName, `Acme ${run}`, "expand.client.name");
  equal(client.slug, `acme-${run}`, "expand.client.slug");
  const skills = present(expanded.expand?.skills, "expand.skills");
  equal(skills.map((s) => s.name), [`Rust ${run}`], "expand.skills[].name");
  const listExpanded = await admin.GET("/api/projects", {
    params: { query: { filter, sort: "title", expand: "client", limit: 1 } },
  });
  const firstItem = present(listExpanded.data?.items[0], "first item of an expanded list");
  equal(firstItem.expand?.client?.verified, false, "items[0].expand.client.verified");
  const unexpanded = await admin.GET("/api/projects/{id}", { params: { path: { id: first } } });
  equal(unexpanded.data?.expand, undefined, "no expand member without expand=");

  step("patch with If-Match, then again with the stale version (412)");
  const patched = await admin.PATCH("/api/projects/{id}", {
    params: { path: { id: first }, header: { "If-Match": '"1"' } },
    body: { summary: "Rust and PostgreSQL" },
  });
  const patchedProject = present(patched.data, `patch answered ${patched.response.status}`);
  const version: number = patchedProject.version;
  equal(version, 2, "version after a patch");
  equal(patched.response.headers.get("ETag"), '"2"', "ETag after a patch");
  const stale = await admin.PATCH("/api/projects/{id}", {
    params: { path: { id: first }, header: { "If-Match": '"1"' } },
    body: { summary: "A lost update" },
  });
  equal(stale.response.status, 412, "status of a stale If-Match");
  const staleProblem = present(stale.error, "412 problem body");
  // Problems are a union told apart by `type`: narrowing on it reveals the members.
  check(staleProblem.type === "https://trellis.dev/problems/stale-version", `412 type ${staleProblem.type}`);
  const currentVersion: number = staleProblem.current_version;
  equal(currentVersion, 2, "current_version in the 412 problem");

  step("fire transitions and read the history");
  const published = await admin.POST("/api/projects/{id}/transitions/publish", {
    params: { path: { id: first } },
  });
  equal(published.data?.status, "open", "status after publish");
  check(typeof published.data?.published_at === "string", "published_at is set by publish");
  const reason = "Hired a contractor we know";
  const closed = await admin.POST("/api/projects/{id}/transitions/close", {
    params: { path: { id: first } },
    body: { reason },
  });
  equal(closed.data?.status, "closed", "status after close");
  equal(closed.data?.close_reason, reason, "close_reason set from the input");
  const historyRes = await admin.GET("/api/projects/{id}/history", {
    params: { path: { id: first } },
  });
  const history = present(historyRes.data, `history answered ${historyRes.response.status}`);
  equal(history.items.map((h) => `${h.from}->${h.to}`), ["draft->open", "open->closed"], "history");
  const closing = present(history.items[1], "second history entry");
  check(closing.transition === "close", "the second entry is the close");
  const loggedReason: string = closing.input.reason;
  equal(loggedReason, reason, "the close's input in the history");
  check(typeof closing.request_id === "string", "history entries carry the request id");

  step("a contractor sees only published projects");
  const seen = await contractor.GET("/api/projects", {
    params: { query: { filter: `client = '${org.id}'`, count: true } },
  });
  equal(seen.data?.total, 1, "projects a contractor sees");
  equal(seen.data?.items[0]?.id, first, "the one published project");

  step("a batch: create an organization and a project that references it");
  const batchRes = await admin.POST("/api/batch", {
    body: {
      operations: [
        { op: "create", entity: "organization", data: { name: `Globex ${run}`, slug: `globex-${run}` } },
        { op: "create", entity: "project", data: { title: `Launch ${run}`, client: "$0.id" } },
        { op: "update", entity: "project", id: second, data: { deadline: "2030-01-31" }, if_match: 1 },
      ],
    },
  });
  const batch = present(batchRes.data, `batch answered ${batchRes.response.status}`);
  equal(batch.results.length, 3, "batch results");
  const [newOrg, newProject, updated] = batch.results;
  check(newOrg !== undefined && "slug" in newOrg, "batch result 0 is an organization");
  check(newProject !== undefined && "client" in newProject, "batch result 1 is a project");
  const newClient: string = newProject.client;
  equal(newClient, newOrg.id, "$0.id resolved to the new organization");
  equal(newProject.remote, true, "default applied in a batch create");
  check(updated !== undefined && "deadline" in updated, "batch result 2 is a project");
  equal(updated.deadline, "2030-01-31", "batch update");

  step("an aggregate");
  const aggRes = await admin.GET("/api/projects/aggregate", {
    params: { query: { group_by: "status", count: true, sum: "budget", filter: `client = '${org.id}'` } },
  });
  const agg = present(aggRes.data, `aggregate answered ${aggRes.response.status}`);
  equal(
    agg.groups.map((g) => [g.status, g.count, g.sum_budget]),
    [["closed", 1, "1200.00"], ["draft", 2, "375.50"]],
    "groups by status",
  );

  step("a 422 and its errors[].pointer");
  const invalid = await admin.POST("/api/projects", {
    body: { title: "ab", client: org.id, budget: "-5" },
  });
  equal(invalid.response.status, 422, "status of an invalid create");
  const problem = present(invalid.error, "422 problem body");
  check(problem.type === "https://trellis.dev/problems/validation", `422 type ${problem.type}`);
  const pointers: string[] = problem.errors.map((e) => e.pointer);
  equal(pointers.sort(), ["/budget", "/title"], "errors[].pointer");
  const requestId: string = problem.request_id;
  equal(requestId, present(invalid.response.headers.get("X-Request-Id"), "X-Request-Id"), "request_id is the X-Request-Id");

  console.log(`ok: ${steps.length} steps passed`);
}

main().catch((err: unknown) => {
  if (err instanceof Mismatch) {
    console.error(`FAIL at step "${steps[steps.length - 1] ?? "start"}": ${err.message}`);
  } else {
    console.error(err);
  }
  process.exit(1);
});
