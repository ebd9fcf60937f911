() => {
  // Esc stops the answer being written (as the Stop button does), wherever the focus is.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const stop = document.querySelector("#stop");
    if (stop && !stop.disabled) {
      event.preventDefault();
      stop.click();
    }
  });
}
