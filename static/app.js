// pgbackups dashboard: the little script htmx does not cover. A button with
// data-copy="#id" copies that input's value to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const input = document.querySelector(button.dataset.copy);
  if (!input) return;
  navigator.clipboard.writeText(input.value).then(
    () => { button.textContent = "Copied"; },
    () => { input.select(); button.textContent = "Press Ctrl+C to copy"; },
  );
});
