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
