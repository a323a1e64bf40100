// Times in the operator's own time zone, and client-side sorting of tables marked "sortable".
// No inline script anywhere: the page's Content-Security-Policy allows scripts from this server only.
"use strict";
function rmmLocalTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const iso = el.getAttribute("datetime");
    if (!iso || el.dataset.local) continue;
    const when = new Date(iso);
    if (isNaN(when)) continue;
    el.textContent = when.toLocaleString();
    el.title = iso;
    el.dataset.local = "1";
  }
}
function rmmSortable(root) {
  for (const table of root.querySelectorAll("table.sortable")) {
    if (table.dataset.sortReady) continue;
    table.dataset.sortReady = "1";
    table.querySelectorAll("thead th").forEach((th, index) => {
      th.tabIndex = 0;
      th.classList.add("sortable-head");
      const sort = () => {
        const body = table.tBodies[0];
        const rows = Array.from(body.rows).filter((r) => r.cells.length > index);
        const desc = th.getAttribute("aria-sort") === "ascending";
        table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        const key = (r) => {
          const cell = r.cells[index];
          const time = cell.querySelector("time");
          return time ? time.getAttribute("datetime") : cell.textContent.trim();
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const nx = parseFloat(x), ny = parseFloat(y);
          const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
          return desc ? -c : c;
        });
        rows.forEach((r) => body.appendChild(r));
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }
}
function rmmEnhance(root) { rmmLocalTimes(root); rmmSortable(root); }
document.addEventListener("DOMContentLoaded", () => rmmEnhance(document));
document.addEventListener("htmx:afterSwap", (e) => rmmEnhance(e.target));
