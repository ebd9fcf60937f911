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

  // The Transcribe page: a segment's time plays that stretch of the recording, and stops at its end.
  let playingUntil = null;
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("#tr-segments .seg");
    const player = document.querySelector("#tr-player");
    if (!button || !player) return;
    document.querySelectorAll("#tr-segments .seg.playing").forEach((e) => e.classList.remove("playing"));
    button.classList.add("playing");
    playingUntil = parseFloat(button.dataset.end);
    player.currentTime = parseFloat(button.dataset.start);
    player.play();
  });
  document.addEventListener("timeupdate", (event) => {
    if (event.target.id !== "tr-player" || playingUntil === null) return;
    if (event.target.currentTime >= playingUntil) {
      event.target.pause();
      playingUntil = null;
      document.querySelectorAll("#tr-segments .seg.playing").forEach((e) => e.classList.remove("playing"));
    }
  }, true);

  // Gradio's own markup, mended where it breaks ARIA rules (axe-core: tests/test_browser_a11y.py): the chat's
  // example list holds buttons, not list items; a multi-file example's icons carry a label but no role; the
  // input's thumbnails are list items outside any list.
  // In a Chinese browser, the names Gradio gives its own controls in English are said in Chinese too.
  const chinese = (navigator.language || "").toLowerCase().startsWith("zh");
  const names = {
    "Upload a file": "上传文件", "Record audio": "录音", "Submit": "发送", "Stop": "停止",
    "Multimedia input field": "多媒体输入框", "Copy conversation": "复制对话", "Copy message": "复制消息",
    "Play": "播放", "Pause": "暂停", "Edit": "编辑", "Retry": "重试", "Undo": "撤销", "Download": "下载",
    "Share": "分享", "Remove file": "移除文件", "Uploaded files": "已上传的文件", "File thumbnail": "文件缩略图",
    "Reset to default value": "恢复默认值", "Cancel": "取消",
  };
  const mend = () => {
    document.querySelectorAll("#chatbot .examples[role=list]").forEach((e) => e.setAttribute("role", "group"));
    document.querySelectorAll("#chatbot .example-icon[aria-label]:not([role])").forEach((e) => e.setAttribute("role", "img"));
    document.querySelectorAll("#input .thumbnail-wrapper[role=listitem]").forEach((e) => e.setAttribute("role", "group"));
    // The Transcribe page's audio input: its drop area and speed button are named by their own text (their
    // aria-labels said something else), and the waveform's scrolling strip can take the focus.
    document.querySelectorAll("#tr-audio .upload-container[aria-label]").forEach((e) => e.removeAttribute("aria-label"));
    document.querySelectorAll("#tr-audio .playback").forEach((e) => {
      const text = e.innerText.trim();
      if (text && !(e.getAttribute("aria-label") || "").startsWith(text)) {
        e.setAttribute("aria-label", `${text}: ${chinese ? "播放速度" : "playback speed"}`);
      }
    });
    document.querySelectorAll("#tr-audio #waveform > div").forEach((host) => {
      const strip = host.shadowRoot && host.shadowRoot.querySelector(".scroll");
      if (strip && !strip.hasAttribute("tabindex")) strip.setAttribute("tabindex", "0");
    });
    // The download button Save hands its zip to is clicked by the page alone: out of the tab order and unseen.
    document.querySelectorAll("#save-file, #save-file button").forEach((e) => {
      e.setAttribute("tabindex", "-1");
      e.setAttribute("aria-hidden", "true");
    });
    if (!chinese) return;
    document.querySelectorAll("[aria-label]").forEach((e) => {
      const name = names[e.getAttribute("aria-label")];
      if (name) e.setAttribute("aria-label", name);
    });
  };
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; mend(); });
  }).observe(document.body, { childList: true, subtree: true });
  mend();
}
