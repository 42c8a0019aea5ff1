// The vmove console: plain JavaScript, no build step (docs/CONSOLE.md).
// Every action is a call of vmoved's API (POST /api/METHOD with the
// session's CSRF token); live data comes as Server-Sent Events.  Text from
// the server is always set with textContent, never parsed as HTML.
'use strict';

const S = { csrf: '', user: '', host: '', rights: [] };
const $ = (id) => document.getElementById(id);

async function api(method, params) {
  const r = await fetch('/api/' + method, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': S.csrf },
    body: JSON.stringify(params || {}),
  });
  const j = await r.json();
  if (j.error) throw j.error;
  return j.result;
}

const can = (right) => S.rights.includes(right);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(table, cells, header) {
  const tr = el('tr');
  for (const c of cells) {
    const td = el(header ? 'th' : 'td');
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? '' : String(c);
    tr.appendChild(td);
  }
  table.appendChild(tr);
  return tr;
}

function bytes(n) {
  if (n === undefined || n === null) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + u[i];
}
const ms = (v) => (v === undefined || v === null ? '-' : v >= 1000 ? (v / 1000).toFixed(2) + ' s' : v + ' ms');
const status = (t, bad) => { $('status').textContent = t || ''; $('status').className = bad ? 'refused' : ''; };

// ---- pages ------------------------------------------------------------

async function showHost() {
  const h = await api('host.show');
  const jobs = (await api('jobs.list')).jobs;
  const t = $('host-table');
  t.replaceChildren();
  const m = h.migration;
  row(t, ['host', h.name]);
  row(t, ['accelerator', h.accel.effective + ' (setting ' + h.accel.setting + '): ' + h.accel.reason]);
  row(t, ['QEMU', h.qemu.version + ', default machine ' + h.qemu.default_machine]);
  row(t, ['memory', bytes(h.memory.free_mib * 1048576) + ' free of ' + bytes(h.memory.total_mib * 1048576)]);
  row(t, ['VMs', h.vms + ' (' + h.vms_running + ' running)']);
  row(t, ['migration', 'incoming ' + (m.incoming ? 'on' : 'off') + ', outgoing ' + (m.outgoing ? 'on' : 'off') +
          ', networks ' + m.networks_text + ', post-copy ' + m.postcopy]);
  row(t, ['limits', 'live ' + m.live.in_use + '/' + m.live.max + ', storage ' + m.storage.in_use + '/' +
          m.storage.max + ' (in use/max)']);
  row(t, ['queue', jobs.filter((j) => j.state === 'queued').length + ' waiting']);
  row(t, ['peers', Object.keys(h.peers).join(', ') || '(none)']);
}

async function vmDetails(name) {
  try { return await api('vm.show', { name }); } catch (e) { return { name, state: '?', error: e.message }; }
}

async function showVms() {
  const list = (await api('vm.list')).vms;
  const t = $('vm-table');
  t.replaceChildren();
  row(t, ['VM', 'state', 'host', 'disks', 'NICs', 'HA', ''], true);
  for (const v of list) {
    const d = await vmDetails(v.name);
    const cfg = d.config || {};
    const disks = (cfg.disks || []).map((x) => x.id + ': ' + x.path).join('\n');
    const nics = (cfg.nics || []).map((x) => (x.switch || x.bridge || '?') + (x.mac ? ' ' + x.mac : '')).join('\n');
    const act = el('span');
    // Only what this user may do here is offered.
    if ((can('migrate.out') || can('storage.move')) && v.state === 'running') {
      const b = el('button', 'Move…');
      b.type = 'button';
      b.className = 'move-btn';
      b.dataset.vm = v.name;
      b.addEventListener('click', () => { location.hash = '#move'; pickVm(v.name); });
      act.appendChild(b);
    }
    row(t, [v.name, v.state, S.host, disks, nics, v.ha ? 'yes' : 'no', act]);
  }
}

const jobRows = new Map();
function jobCells(j) {
  const p = j.progress || {};
  return [j.id, j.kind, j.vm, j.state, j.phase,
    p.percent !== undefined ? p.percent.toFixed(1) + ' %' : '', p.rate_Bps !== undefined ? bytes(p.rate_Bps) + '/s' : '',
    p.ram_remaining !== undefined ? bytes(p.ram_remaining) : '', p.dirty_rate_Bps !== undefined ? bytes(p.dirty_rate_Bps) + '/s' : '',
    p.pass !== undefined ? p.pass : '', p.eta_s !== undefined && p.eta_s !== null ? p.eta_s.toFixed(1) + ' s' : ''];
}
function jobUpdate(j) {
  const t = $('job-table');
  const old = jobRows.get(j.id);
  const tr = el('tr');
  tr.className = 'state-' + j.state;
  for (const c of jobCells(j)) tr.appendChild(el('td', c));
  if (old) old.replaceWith(tr); else t.insertBefore(tr, t.children[1] || null);
  jobRows.set(j.id, tr);
}

let follow = null;
async function showJobs() {
  const t = $('job-table');
  t.replaceChildren();
  jobRows.clear();
  row(t, ['job', 'kind', 'VM', 'state', 'phase', '%', 'rate', 'remaining', 'dirty rate', 'pass', 'ETA'], true);
  const jobs = (await api('jobs.list', { all: true, limit: 30 })).jobs;
  for (const j of jobs.reverse()) jobUpdate(j);
  // Every job's changes, as vmoved streams them: no polling.
  if (!follow) {
    follow = new EventSource('/api/stream/jobs.follow');
    follow.addEventListener('job', (e) => jobUpdate(JSON.parse(e.data)));
  }
}

async function showAudit() {
  const t = $('audit-table');
  t.replaceChildren();
  if (!can('host.admin')) {
    row(t, ['the audit log needs host.admin on ' + S.host]);
    return;
  }
  const recs = (await api('audit.list', { limit: 100 })).records;
  row(t, ['time', 'who', 'action', 'VM', 'from', 'verdict', 'reason'], true);
  for (const r of recs.reverse())
    row(t, [r.ts_ms ? new Date(r.ts_ms).toISOString() : '', r.who, r.action, r.vm || '', r.from || '', r.verdict, r.reason || '']);
}

// ---- the move wizard --------------------------------------------------

let wizardVms = [];
function pickVm(name) { if (name) $('w-vm').value = name; wizardType(); }
function wizardKind() { return document.querySelector('input[name="w-type"]:checked').value; }

async function wizardType() {
  const kind = wizardKind();
  $('w-host-row').hidden = kind === 'storage';
  $('w-storage-row').hidden = kind !== 'shared-nothing';
  $('w-downtime-row').hidden = kind === 'storage';
  const box = $('w-disks');
  box.hidden = kind !== 'storage';
  box.replaceChildren();
  if (kind === 'storage' && $('w-vm').value) {
    const d = await vmDetails($('w-vm').value);
    for (const disk of (d.config || {}).disks || []) {
      const l = el('label', 'disk ' + disk.id + ' (' + disk.path + ') to directory ');
      const i = el('input');
      i.dataset.disk = disk.id;
      i.placeholder = 'stays where it is';
      l.appendChild(i);
      box.appendChild(l);
    }
  }
}

async function showMove() {
  const offered = ['live', 'quick', 'shared-nothing'].filter(() => can('migrate.out'));
  if (can('storage.move')) offered.push('storage');
  for (const r of document.querySelectorAll('input[name="w-type"]')) {
    r.parentElement.hidden = !offered.includes(r.value);
    if (r.checked && !offered.includes(r.value) && offered.length) r.checked = false;
  }
  if (!document.querySelector('input[name="w-type"]:checked') && offered.length)
    document.querySelector('input[value="' + offered[0] + '"]').checked = true;
  $('wizard').hidden = offered.length === 0;
  if (!offered.length) { status('you (' + S.user + ') may not move VMs on ' + S.host); return; }
  wizardVms = (await api('vm.list')).vms.filter((v) => v.state === 'running');
  const sel = $('w-vm');
  const keep = sel.value;
  sel.replaceChildren(...wizardVms.map((v) => { const o = el('option', v.name); o.value = v.name; return o; }));
  if (keep) sel.value = keep;
  const peers = (await api('peer.list')).peers || {};
  const names = Array.isArray(peers) ? peers.map((p) => p.name) : Object.keys(peers);
  $('w-to').replaceChildren(...names.map((n) => { const o = el('option', n); o.value = n; return o; }));
  await wizardType();
}

function moveRequest() {
  const kind = wizardKind(), name = $('w-vm').value;
  if (kind === 'storage') {
    const disks = {};
    for (const i of document.querySelectorAll('#w-disks input')) if (i.value.trim()) disks[i.dataset.disk] = i.value.trim();
    return ['vm.move-storage', { name, disks, wait: false }];
  }
  const tuning = {};
  if (kind === 'quick') tuning.quick = true;
  if (kind === 'shared-nothing') tuning.with_storage = $('w-with-storage').value.trim();
  const dt = parseInt($('w-downtime').value, 10);
  if (dt > 0) tuning.max_downtime_ms = dt;
  return ['vm.move', { name, to: $('w-to').value, tuning, wait: false }];
}

function showProblems(err) {
  const ul = $('w-problems');
  ul.replaceChildren();
  const list = err.problems && err.problems.length ? err.problems : [err.message];
  for (const p of list) ul.appendChild(el('li', typeof p === 'string' ? p : p.message || JSON.stringify(p)));
  if (err.hint) ul.appendChild(el('li', 'what to do: ' + err.hint));
}

function showSummary(job) {
  const r = job.result || {}, t = $('w-summary');
  t.replaceChildren();
  row(t, ['total time', ms(r.total_ms !== undefined ? r.total_ms : job.finished_ms - job.created_ms)]);
  if (r.qemu_downtime_ms !== undefined) row(t, ['downtime (QEMU)', ms(r.qemu_downtime_ms)]);
  if (r.pause_ms !== undefined) row(t, ['pause', ms(r.pause_ms)]);
  if (r.client_downtime_ms !== undefined) row(t, ['downtime (client)', ms(r.client_downtime_ms)]);
  if (r.bytes_sent !== undefined) row(t, ['bytes sent', bytes(r.bytes_sent) + (r.passes ? ' in ' + r.passes + ' passes' : '')]);
  if (r.to) row(t, ['now on', r.to]);
}

let updates = 0;
function onMoveEvent(job) {
  const p = job.progress || {};
  updates++;
  $('w-updates').textContent = updates + ' progress updates';
  $('w-title').textContent = 'job ' + job.id + ': ' + job.vm + ' ' + (job.state === 'running' ? job.phase : job.state);
  if (p.percent !== undefined) $('w-bar').value = p.percent;
  $('w-line').textContent = [job.phase, p.percent !== undefined ? p.percent.toFixed(1) + ' %' : '',
    p.rate_Bps !== undefined ? 'rate ' + bytes(p.rate_Bps) + '/s' : '',
    p.ram_remaining !== undefined ? 'remaining ' + bytes(p.ram_remaining) : '',
    p.dirty_rate_Bps !== undefined ? 'dirty ' + bytes(p.dirty_rate_Bps) + '/s' : '',
    p.eta_s ? 'ETA ' + p.eta_s.toFixed(1) + ' s' : ''].filter(Boolean).join('  ');
}

function onMoveEnd(job) {
  onMoveEvent(job);
  const kind = job.kind === 'storage.move' ? 'storage moved' : 'migrated';
  if (job.state === 'succeeded') {
    $('w-title').textContent = kind + ' ' + job.vm;
    $('w-title').className = 'state-succeeded';
    if (job.kind !== 'storage.move') $('w-bar').value = 100;
    showSummary(job);
  } else {
    $('w-title').textContent = 'refused or failed: ' + job.vm + ' (' + job.state + ')';
    $('w-title').className = 'state-failed';
    showProblems(job.error || { message: job.state });
  }
  $('w-start').disabled = false;
}

async function startMove(ev) {
  ev.preventDefault();
  $('w-result').hidden = false;
  $('w-problems').replaceChildren();
  $('w-summary').replaceChildren();
  $('w-title').className = '';
  $('w-title').textContent = 'checking the destination…';
  $('w-bar').value = 0;
  updates = 0;
  $('w-start').disabled = true;
  const [method, params] = moveRequest();
  let started;
  try {
    started = await api(method, params);
  } catch (e) {
    $('w-title').textContent = 'refused';
    $('w-title').className = 'state-failed';
    showProblems(e);
    $('w-start').disabled = false;
    return;
  }
  const es = new EventSource('/api/stream/jobs.watch?id=' + encodeURIComponent(started.job));
  es.addEventListener('job', (e) => onMoveEvent(JSON.parse(e.data)));
  es.addEventListener('end', (e) => { es.close(); onMoveEnd(JSON.parse(e.data)); });
  es.addEventListener('failure', (e) => { es.close(); showProblems(JSON.parse(e.data)); $('w-start').disabled = false; });
}

// ---- navigation -------------------------------------------------------

const pages = { hosts: showHost, vms: showVms, jobs: showJobs, audit: showAudit, move: showMove };
async function route() {
  const name = (location.hash || '#vms').slice(1).split('?')[0];
  const page = pages[name] ? name : 'vms';
  for (const p of Object.keys(pages)) {
    $('page-' + p).hidden = p !== page;
    $('nav-' + p).className = p === page ? 'active' : '';
  }
  status('');
  try { await pages[page](); } catch (e) { status(e.message || String(e), true); }
}

async function main() {
  const r = await fetch('/api/session', { credentials: 'same-origin' });
  if (!r.ok) { status('not logged in: run `vmove ui login` and open the link it prints', true); return; }
  Object.assign(S, await r.json());
  S.rights = (await api('acl.whoami')).rights;
  $('who').textContent = 'user:' + S.user + ' on ' + S.host + ' (' + (S.rights.join(', ') || 'no rights') + ')';
  $('nav-move').hidden = !(can('migrate.out') || can('storage.move'));
  $('logout').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': S.csrf } });
    location.reload();
  });
  $('wizard').addEventListener('submit', startMove);
  $('w-vm').addEventListener('change', wizardType);
  for (const r2 of document.querySelectorAll('input[name="w-type"]')) r2.addEventListener('change', wizardType);
  window.addEventListener('hashchange', route);
  document.body.dataset.ready = '1';
  await route();
}
main();
