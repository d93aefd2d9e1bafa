// faceapi console: small progressive enhancements; every page works without script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Show times in the reader's own time zone; the server renders UTC.
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.title = when.toLocaleString();
    // Ages ("12 min") stay as they are; the exact time is in the tooltip.
    if (!el.hasAttribute("data-keep")) el.textContent = when.toLocaleString();
  }

  // One click, one submission: a double click must not send a decision twice.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", (event) => {
      window.setTimeout(() => {
        if (event.defaultPrevented) return;
        for (const button of form.querySelectorAll("button[type=submit]")) {
          button.disabled = true;
        }
      }, 0);
    });
  }
});
