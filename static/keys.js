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
  // Voice mode (app/voice.py): the switch starts Gradio's streaming microphone, kept out of sight, or stops
  // it; where the browser gives the page no microphone, the line under the switch says why. Answers are
  // read aloud with the browser's own speech synthesis when asked; talking, Stop and Clear silence it.
  const voiceSays = chinese ? {
    insecure: "浏览器只在 https:// 或 localhost 上允许使用麦克风，而本页是 {origin}：请用 https 或在本机打开（或用 --share 链接）。",
    blocked: "浏览器拒绝了本页使用麦克风：请在地址栏的网站设置中允许麦克风，然后再打开语音模式。",
    none: "找不到可用的麦克风（{reason}）。",
  } : {
    insecure: "Browsers allow the microphone only on https:// or localhost, and this page is {origin}: open it over https or on this machine (or use the --share link).",
    blocked: "The browser has blocked the microphone for this page: allow it in the site settings next to the address, then switch voice mode on again.",
    none: "No usable microphone was found ({reason}).",
  };
  const voiceProblem = (text) => {
    const row = document.querySelector("#voice");
    if (!row) return;
    let line = document.querySelector("#voice-problem");
    if (!line && text) {
      line = document.createElement("p");
      line.id = "voice-problem";
      line.setAttribute("role", "alert");
      row.after(line);
    }
    if (line) line.textContent = text;
  };
  const voiceOff = () => {
    const box = document.querySelector("#voice-mode input");
    if (box && box.checked) box.click();
  };
  const whenThere = (selector, then, tries = 100) => {
    const found = document.querySelector(selector);
    if (found) then(found);
    else if (tries > 0) setTimeout(() => whenThere(selector, then, tries - 1), 50);
  };
  window.qwenVoice = {
    toggle(on) {
      if (!on) { // (a problem said when the switch went back off stays said)
        const stop = document.querySelector("#voice-mic .stop-button");
        if (stop) stop.click();
        this.silence();
        return;
      }
      voiceProblem("");
      if (!window.isSecureContext || !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
        voiceProblem(voiceSays.insecure.replace("{origin}", location.origin));
        voiceOff();
        return;
      }
      navigator.mediaDevices.getUserMedia({ audio: true }).then((stream) => {
        stream.getTracks().forEach((t) => t.stop());
        whenThere("#voice-mic .record-button", (button) => button.click());
      }).catch((error) => {
        voiceProblem(error && error.name === "NotAllowedError" ? voiceSays.blocked
          : voiceSays.none.replace("{reason}", (error && (error.message || error.name)) || "?"));
        voiceOff();
      });
    },
    cutShort: false,
    before: 0,
    answers() {
      return [...document.querySelectorAll("#chatbot [data-testid=bot] .message-content")]
        .filter((e) => !e.closest(".thought-group")); // notes (the length limit, an error) are not answers
    },
    begin() { this.cutShort = false; this.before = this.answers().length; },
    cut() { this.cutShort = true; this.silence(); },
    speakAnswer(on) {
      // Only a new answer (a refused question leaves none), and not one cut short.
      const answers = this.answers();
      if (!on || this.cutShort || answers.length <= this.before || !window.speechSynthesis) return;
      const text = answers[answers.length - 1].innerText.trim();
      if (!text) return;
      window.speechSynthesis.cancel();
      window.speechSynthesis.speak(new SpeechSynthesisUtterance(text));
    },
    silence() {
      if (window.speechSynthesis) window.speechSynthesis.cancel();
    },
  };

  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; mend(); });
  }).observe(document.body, { childList: true, subtree: true });
  mend();
}
