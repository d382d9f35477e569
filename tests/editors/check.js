// The editor schemas (schemas/*.json) in yaml-language-server, the language server
// of VS Code's YAML extension and others: what a person typing sees. Run from this
// folder: `npm ci && node check.js`. It exits non-zero on the first disagreement.
'use strict';
const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { getLanguageService } = require('yaml-language-server');
const { TextDocument } = require('vscode-languageserver-textdocument');

const repo = path.resolve(__dirname, '..', '..');
const ls = getLanguageService({
  schemaRequestService: (uri) => Promise.resolve(fs.readFileSync(new URL(uri), 'utf8')),
  workspaceContext: { resolveRelativePath: (rel, res) => new URL(rel, res).toString() },
});
ls.configure({ validate: true, hover: true, completion: true });

// A document at `rel` (in the repository, so its `$schema` line resolves).
let version = 0;
function doc(rel, text) {
  version += 1;
  return TextDocument.create(`file://${path.join(repo, rel)}`, 'yaml', version, text);
}
const header = {
  model: '# yaml-language-server: $schema=../schemas/model.schema.json\n',
  policy: '# yaml-language-server: $schema=../schemas/policy.schema.json\n',
  workflow: '# yaml-language-server: $schema=../schemas/workflow.schema.json\n',
  trellis: '# yaml-language-server: $schema=schemas/trellis.schema.json\n',
  migration: '# yaml-language-server: $schema=../schemas/migration.schema.json\n',
};
const file = { model: 'models/x.yaml', policy: 'policies/x.yaml', workflow: 'workflows/x.yaml', trellis: 'trellis.yaml', migration: 'migrations/0001_x.yaml' };
function at(text, marker) {
  const i = text.indexOf(marker);
  assert(i >= 0, marker);
  const before = text.slice(0, i);
  return { line: before.split('\n').length - 1, character: i - before.lastIndexOf('\n') - 1 };
}

async function underlines(kind, body) {
  const text = header[kind] + body;
  return (await ls.doValidation(doc(file[kind], text), false)).map((d) => `${d.range.start.line}:${d.message}`);
}

async function main() {
  // Underlines: each on the line at fault, with a message a person understands.
  const cases = [
    ['model', 'entity: task\nfields:\n  n: { type: integer, default: "abc" }\n', 3, 'Expected "integer"'],
    ['model', 'entity: task\nfields:\n  n: { type: integer, requird: true }\n', 3, 'requird is not allowed'],
    ['model', 'entity: task\nfields:\n  o: { type: ref, to: task, default: x }\n', 3, 'default is not allowed'],
    ['trellis', 'auth:\n  jwt: { algorithm: HS256, secret_env: S }\n  users: { entity: user, access_ttl: 10 }\n', 3, 'minimum of 30'],
    ['policy', 'entity: task\ntests:\n  - as: { id: u1, rols: [a] }\n    expect: { read: allow }\n', 3, 'rols is not allowed'],
    ['policy', 'entity: task\ntests:\n  - as: anonymous\n    expect: { read: maybe }\n', 4, '"allow", "deny"'],
    ['workflow', 'entity: t\nfield: s\ninitial: a\nstates: { a: { fnal: true } }\ntransitions: {}\n', 4, 'fnal is not allowed'],
    ['migration', 'migration: 0001_x\nstep: []\ndefinitions: {}\n', 2, 'step is not allowed'],
  ];
  for (const [kind, body, line, message] of cases) {
    const found = await underlines(kind, body);
    assert(found.some((f) => f.startsWith(`${line}:`) && f.includes(message)), `${kind} ${JSON.stringify(body)}: ${JSON.stringify(found)}`);
  }
  // What check accepts, the editor does not underline.
  for (const [kind, body] of [
    ['policy', 'entity: task\nrules:\n  - roles: client\n    allow: read\n'],
    ['model', 'entity: task\nfields:\n  d: { type: date, default: today }\n  m: { type: decimal, default: "12.50" }\nsearch: d\n'],
  ]) {
    assert.deepStrictEqual(await underlines(kind, body), [], body);
  }

  // Completion: the keys of a policy test, of `expect`, of a field of each type.
  const complete = async (kind, body, marker) => {
    const text = header[kind] + body;
    // At the end of the marker's last line (after its indentation).
    const pos = at(text, marker);
    pos.character += marker.replace(/\n$/, '').length;
    const list = await ls.doComplete(doc(file[kind], text), pos, false);
    return list.items.map((i) => i.label);
  };
  const includes = (got, want) => want.forEach((w) => assert(got.includes(w), `${w} not in ${got}`));
  includes(await complete('policy', 'entity: task\ntests:\n  - as: anonymous\n    \n', '    \n'), ['setup', 'record', 'change', 'expect']);
  includes(await complete('policy', 'entity: task\ntests:\n  - as: anonymous\n    expect:\n      \n', '      \n'), ['list', 'read', 'create', 'update', 'delete']);
  includes(await complete('model', 'entity: task\nfields:\n  n:\n    type: decimal\n    \n', '    \n'), ['scale', 'precision', 'default', 'min', 'max']);

  // Hover: every key of the sample projects that the schemas name has its text.
  let described = 0;
  const missing = [];
  const samples = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.yaml')) samples.push(p);
    }
  };
  for (const d of ['models', 'policies', 'workflows', 'tests/fixtures/editors', 'tests/fixtures/editors-keys', 'examples/helpdesk']) walk(path.join(repo, d));
  samples.push(path.join(repo, 'trellis.yaml'));
  // Keys a person writes as data (field, state and transition names, setup rows,
  // headers) have no text of their own; the schemas' key names do.
  const named = new Set();
  const collect = (v) => {
    if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') {
      if (v.properties) Object.keys(v.properties).forEach((k) => named.add(k));
      Object.values(v).forEach(collect);
    }
  };
  for (const f of fs.readdirSync(path.join(repo, 'schemas'))) collect(JSON.parse(fs.readFileSync(path.join(repo, 'schemas', f), 'utf8')));
  for (const sample of samples) {
    const text = fs.readFileSync(sample, 'utf8');
    const d = TextDocument.create(`file://${sample}`, 'yaml', 1, text);
    const lines = text.split('\n');
    let inData = null; // the indentation of a `setup:`, `record:`, `change:`, `headers:` block
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (line.trimStart().startsWith('#') || !line.trim()) continue;
      const indent = line.length - line.trimStart().length;
      if (inData !== null && indent > inData) continue;
      inData = null;
      const block = /^(\s*)(- )?(setup|record|change|headers|claims|definitions):\s*$/.exec(line);
      if (block) inData = block[1].length + (block[2] ? 2 : 0);
      const re = /(?:^|[{,]\s*|- )([a-z_]+):(?=\s)/g;
      let m;
      while ((m = re.exec(line))) {
        const key = m[1];
        if (!named.has(key) || /\b(setup|record|change|headers|claims):\s*[{[]/.test(line.slice(0, m.index))) continue;
        const h = await ls.doHover(d, { line: i, character: m.index + m[0].length - key.length - 1 + 1 });
        const body = ((h && h.contents && h.contents.value) || '').split('\n').filter((l) => l.trim() && !l.startsWith('####') && !l.startsWith('Source:'));
        if (body.join(' ').length > 10) described += 1;
        else missing.push(`${path.relative(repo, sample)}:${i + 1} ${key}`);
      }
    }
  }
  console.log(`hover text on ${described} keys of ${samples.length} sample files; without: ${missing.length}`);
  assert.deepStrictEqual(missing, []);
  console.log('editor schemas: underlines, completion and hover as expected');
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
