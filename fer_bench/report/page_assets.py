"""The leaderboard page's inline CSS and its sorting script (:mod:`fer_bench.report.page` writes them into the file)."""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table.conditions th{text-align:left;padding:2px 12px 2px 0;vertical-align:top;color:#555;font-weight:600}
table.conditions td{padding:2px 0}
.note,.hint{color:#444;font-size:12.5px;max-width:1200px}.missing{color:#8a5a00;font-style:italic}
.scroll{overflow-x:auto;max-width:100%}
table.lb{border-collapse:collapse;font-size:12px;white-space:nowrap}
table.lb th{background:#f2f2f5;cursor:pointer;position:sticky;top:0;padding:4px 6px;border-bottom:2px solid #bbb;
 user-select:none;white-space:nowrap;vertical-align:bottom}
h3.table-heading{font-size:14px;margin:16px 0 4px;font-weight:600}
td.nc{color:#b04000;font-weight:600}
table.lb th.asc::after{content:" \\25B2"}table.lb th.desc::after{content:" \\25BC"}
table.lb td{padding:3px 6px;border-bottom:1px solid #eee;text-align:right}
table.lb td:nth-child(2),table.lb td:nth-child(3){text-align:left;font-weight:600}
table.lb td.wrap{white-space:normal;min-width:7em;max-width:14em;text-align:left}
tr.published td{background:#fbf7e9;color:#5b5030;font-style:italic}
.badge{display:inline-block;font-size:10px;font-style:normal;background:#c9a227;color:#fff;border-radius:3px;
 padding:0 4px;margin-left:4px}
td.sig-best{background:#d8f0d8;font-weight:700}td.sig-near{background:#e9f6e9}td.sig-below{color:#999}td.sig-runs{color:#999;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0}figcaption{font-size:12px;color:#444;max-width:640px}
img{max-width:100%;height:auto;border:1px solid #eee}
"""

JS = """
(function () {
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.lb"));
  function cellValue(td) {
    if (td.hasAttribute("data-v")) { return parseFloat(td.getAttribute("data-v")); }
    if (td.hasAttribute("data-blank")) { return null; }
    var t = td.textContent.trim();
    return t === "" || t === "\\u2013" ? null : t;
  }
  function sortTable(table, key, dir) {
    var ths = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var col = ths.findIndex(function (th) { return th.getAttribute("data-key") === key; });
    if (col < 0) { return false; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (tr, i) {
      return {tr: tr, i: i, v: cellValue(tr.cells[col])};
    });
    var numeric = rows.every(function (r) { return r.v === null || typeof r.v === "number"; });
    var sign = dir === "desc" ? -1 : 1;
    rows.sort(function (a, b) {
      if (a.v === null || b.v === null) { return (a.v === null) - (b.v === null) || a.i - b.i; }  // blanks last
      var c = numeric ? (typeof a.v === "number" ? a.v : Infinity) - (typeof b.v === "number" ? b.v : Infinity)
                      : String(a.v).localeCompare(String(b.v), undefined, {numeric: true});
      return sign * c || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.tr); });
    ths.forEach(function (th) { th.classList.remove("asc", "desc"); });
    ths[col].classList.add(dir);
    table.setAttribute("data-sorted", key + ":" + dir);
    return true;
  }
  function sortBy(key, dir) {
    return tables.map(function (t) { return sortTable(t, key, dir); }).some(Boolean);
  }
  tables.forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener("click", function () {
        sortTable(table, th.getAttribute("data-key"), th.classList.contains("desc") ? "asc" : "desc");
      });
    });
  });
  var q = new URLSearchParams(window.location.search);
  if (q.get("sort")) { sortBy(q.get("sort"), q.get("dir") === "asc" ? "asc" : "desc"); }
  var right = tables.reduce(function (m, t) { return Math.max(m, t.getBoundingClientRect().right); }, 0);
  document.documentElement.setAttribute("data-tables-right", String(Math.ceil(right)));
  window.ferBenchSort = sortBy;
  document.documentElement.setAttribute("data-page-ready", "1");
})();
"""
