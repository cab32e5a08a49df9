// Times are written in UTC by the server; show them in the viewer's zone (UTC stays on hover).
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var when = new Date(el.getAttribute("datetime"));
  if (!isNaN(when)) { el.textContent = when.toLocaleString(); }
});
