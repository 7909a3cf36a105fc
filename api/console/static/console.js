// Progressive enhancement only: every page reads the same without this file.
"use strict";

// Times: the server writes UTC; show them in the viewer's zone and keep UTC on hover.
function localizeTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[datetime]:not([data-local])")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      el.textContent = format.format(at);
      el.dataset.local = "1";
    }
  }
}

document.addEventListener("DOMContentLoaded", () => localizeTimes(document));
window.cameleerConsole = { localizeTimes };
