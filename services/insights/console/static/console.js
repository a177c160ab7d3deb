// Progressive touches only: every page works without this script.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  for (const button of form.querySelectorAll("button[type=submit]")) {
    // One click, one request: a double click would post twice.
    setTimeout(() => { button.disabled = true; }, 0);
  }
});
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.tagName === "SELECT" && field.form && field.form.id === "lead-search") {
    field.form.requestSubmit();
  }
});
