let reader = localStorage.getItem('safegen-reader') || '';
let current = null, t0 = null, decision = null, ms = null, saving = false;
const $ = (id) => document.getElementById(id);
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;',
    '"': '&quot;', "'": '&#39;'}[c]));
}
async function join() {
  const id = $('reader-input').value.trim();
  if (!id) return;
  const r = await fetch('api/join', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                     body: JSON.stringify({reader: id})});
  const out = await r.json();
  if (!r.ok) { $('status').textContent = out.error; return; }
  reader = id; localStorage.setItem('safegen-reader', id);
  next();
}
async function next() {
  $('join').hidden = true; $('reading').hidden = false;
  const r = await fetch('api/next?reader=' + encodeURIComponent(reader));
  current = await r.json(); decision = null; ms = null; t0 = null;
  if (current.done) {
    $('reading').innerHTML = `<h2>Study complete</h2><p>${current.answered} readings saved. Thank you.</p>`;
    $('status').textContent = 'done';
    return;
  }
  $('progress').textContent = `reading ${current.answered + 1} of ${current.total}`;
  const s = current.safegen;
  $('safegen').innerHTML = s ? `<p><b>SAFEGEN:</b> <span class="${s.unsafe ? 'unsafe' : 'safe'}">
    ${s.unsafe ? 'unsafe' : 'safe'}</span>, p = ${Number(s.p_value).toPrecision(3)}${
    s.reasons.length ? '; ' + s.reasons.map((x) => `<b>${escapeHtml(x)}</b> (${escapeHtml(GLOSSARY[x] || '')})`).join(', ') : ''}</p>` : '';
  $('phase').textContent = 'loading image...';
  const img = $('case-image');
  img.onload = () => { t0 = performance.now(); $('phase').textContent = 'safe (s) or unsafe (u)?'; };
  img.src = current.image + '?seq=' + current.seq;
}
async function save(likert) {
  if (saving) return;
  saving = true;
  try { await post(likert); } finally { saving = false; }
}
async function post(likert) {
  const body = {reader, seq: current.seq, decision, likert, ms};
  const r = await fetch('api/reading', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) { $('status').textContent = 'not saved: ' + out.error; return; }
  $('status').textContent = `saved reading ${current.seq + 1}`;
  await next();
}
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'INPUT') { if (e.key === 'Enter') join(); return; }
  if (!current || current.done || t0 === null) return;
  if (decision === null && (e.key === 's' || e.key === 'u')) {
    ms = performance.now() - t0;
    decision = e.key === 's' ? 'safe' : 'unsafe';
    $('phase').textContent = `${decision}: trust in this decision, 1 (none) to 5 (full)?`;
  } else if (decision !== null && '12345'.includes(e.key) && e.key.length === 1) {
    save(Number(e.key));
  }
});
$('join-button').addEventListener('click', join);
if (reader) { $('reader-input').value = reader; next(); }
