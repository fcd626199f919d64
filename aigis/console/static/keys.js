// Keyboard shortcuts: a key presses the button whose data-key it is (h, a, 1..N, u, s, z).
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  var target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
  var key = event.key.length === 1 ? event.key.toLowerCase() : "";
  if (!/^[a-z0-9]$/.test(key)) return;
  var button = document.querySelector('button[data-key="' + key + '"]');
  if (button && !button.disabled) {
    event.preventDefault();
    document.querySelectorAll("button").forEach(function (b) { b.disabled = b !== button; });
    button.click();
  }
});
