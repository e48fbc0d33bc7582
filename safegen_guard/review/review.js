let items = [], pos = 0;
const $ = (id) => document.getElementById(id);
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;',
    '"':'&quot;',"'":'&#39;'}[c]));
}
async function load() {
  const r = await fetch('api/items?reason=' + encodeURIComponent($('reason').value));
  items = await r.json(); pos = 0; render();
}
function render() {
  const it = items[pos];
  $('position').textContent = items.length ? `item ${pos + 1} of ${items.length}` : '';
  if (!it) { $('item').innerHTML = '<p>Nothing to review.</p>'; return; }
  const d = it.decision ? `${it.decision.decision} by ${escapeHtml(it.decision.reviewer)}` : 'none yet';
  const reasons = it.reasons.map((r) => `<li><b>${escapeHtml(r)}</b>: ${escapeHtml(GLOSSARY[r] || '')}</li>`).join('');
  const views = Object.entries(it.view_p_values).sort((a, b) => a[1] - b[1])
    .map(([v, p]) => `${escapeHtml(v)} ${p.toPrecision(3)}`).join(', ');
  const img = it.image ? `<img class="panel" alt="evidence" src="files/${encodeURI(it.image)}">`
                       : '<p class="small">no image in this folder</p>';
  $('item').innerHTML = `<h2>${escapeHtml(it.label)}: <span class="${it.unsafe ? 'unsafe' : 'safe'}">
    ${it.unsafe ? 'unsafe' : 'safe'}</span>, p = ${it.p_value.toPrecision(3)}</h2>${img}
    <ul>${reasons}</ul><p class="small">view p-values: ${views}</p>
    <p>decision: <b id="decision">${d}</b></p>`;
}
async function decide(decision) {
  const it = items[pos]; if (!it) return;
  const body = {item: it.id, decision, note: $('note').value, reviewer: $('reviewer').value};
  const r = await fetch('api/decide', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                       body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) { $('status').textContent = 'not saved: ' + out.error; return; }
  it.decision = out; $('note').value = '';
  $('status').textContent = `saved ${decision} for ${it.label}`;
  if (pos < items.length - 1) pos += 1;
  render();
}
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') {
    if (e.key === 'Enter' || e.key === 'Escape') e.target.blur();
    return;
  }
  const keys = {a: 'accept', r: 'reject', u: 'unsure'};
  if (keys[e.key]) { e.preventDefault(); decide(keys[e.key]); }
  else if (e.key === 'n') { e.preventDefault(); $('note').focus(); }
  else if (e.key === 'j' && pos < items.length - 1) { pos += 1; render(); }
  else if (e.key === 'k' && pos > 0) { pos -= 1; render(); }
});
$('reason').addEventListener('change', load);
load();
