"""English and Chinese text of the page.

Labels go through ``gr.I18n`` (the browser picks the language). Messages the handlers raise or show
(``gr.Error``/``gr.Warning``/``gr.Info``, queue notes) are picked here from the request's
Accept-Language header with :func:`say`. The model's own sentences (``user_message``) stay as written.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Qwen2-Audio chat",
        "title_qwen_audio": "Qwen-Audio chat",
        "subtitle": "Record or upload audio, ask about it, and follow up. Several clips per question are fine.",
        "subtitle_base": "Record or upload one audio and pick a task: transcribe it, translate it or caption it.",
        "placeholder": "Ask about your audio…",
        "stop": "Stop",
        "regenerate": "Regenerate",
        "undo": "Undo",
        "clear": "Clear",
        "save": "Save chat",
        "load": "Load chat",
        "settings": "Generation settings",
        "empty_chat": "**Ask about any audio**: speech in eight languages, sounds, music.\n\nRecord with the "
                      "microphone or attach files below (several clips per question are fine), then type your question.",
        "empty_base": "**A base model: transcribe, translate or caption one audio.**\n\nAttach or record one "
                      "audio below and choose a task; type a prompt only for the free task.",
        "system_prompt": "System prompt",
        "system_prompt_info": "Empty: the model's default (“You are a helpful assistant.”)",
        "max_new_tokens": "Max new tokens",
        "temperature": "Temperature",
        "temperature_info": "0 = greedy: the same answer every time",
        "top_p": "Top-p",
        "top_k": "Top-k",
        "repetition_penalty": "Repetition penalty",
        "seed": "Seed",
        "seed_info": "-1 = a new random seed for every answer",
        "examples": "Examples",
        "task": "Task",
        "task_transcribe": "Transcribe",
        "task_translate": "Translate",
        "task_caption": "Caption",
        "task_free": "Free prompt",
        "language": "Language",
        "timestamps": "Timestamps",
        "timestamps_info": "Time each part of the transcript (pick the language)",
        "base_note": "This is a base model: attach one audio per question and choose a task.",
        "voice_mode": "Voice mode",
        "read_aloud": "Read answers aloud",
        "nav_transcribe": "Transcribe a long recording →",
        "nav_chat": "← Back to the chat",
        "tr_title": "Transcribe a recording",
        "tr_subtitle": "A lecture, a meeting, a podcast: up to two hours, cut into windows at pauses. Click a time to hear it.",
        "tr_audio": "Recording",
        "tr_language": "Spoken language",
        "tr_auto": "Detect it",
        "tr_task": "Task",
        "tr_transcribe": "Transcribe",
        "tr_translate": "Translate into English",
        "tr_start": "Transcribe",
        "tr_files": "Downloads: subtitles (.srt, .vtt) and text (.txt)",
    },
    "zh-CN": {
        "title": "Qwen2-Audio 语音对话",
        "title_qwen_audio": "Qwen-Audio 语音对话",
        "subtitle": "录音或上传音频，就它提问并继续追问。一个问题可以附带多段音频。",
        "subtitle_base": "录音或上传一段音频并选择任务：转写、翻译或描述。",
        "placeholder": "就你的音频提问……",
        "stop": "停止",
        "regenerate": "重新生成",
        "undo": "撤销",
        "clear": "清空",
        "save": "保存对话",
        "load": "载入对话",
        "settings": "生成设置",
        "empty_chat": "**就任何音频提问**：八种语言的语音、声音、音乐。\n\n用麦克风录音或在下方附加文件（一个问题可以附带多段音频），然后输入你的问题。",
        "empty_base": "**基础模型：转写、翻译或描述一段音频。**\n\n在下方附加或录制一段音频并选择任务；只有自由提示任务需要输入文字。",
        "system_prompt": "系统提示词",
        "system_prompt_info": "留空：使用模型默认值（“You are a helpful assistant.”）",
        "max_new_tokens": "最大生成长度",
        "temperature": "温度",
        "temperature_info": "0 = 贪心解码：每次回答相同",
        "top_p": "Top-p（核采样）",
        "top_k": "Top-k（候选词数）",
        "repetition_penalty": "重复惩罚",
        "seed": "随机种子",
        "seed_info": "-1 = 每次回答使用新的随机种子",
        "examples": "示例",
        "task": "任务",
        "task_transcribe": "语音转写",
        "task_translate": "语音翻译",
        "task_caption": "音频描述",
        "task_free": "自由提示",
        "language": "语言",
        "timestamps": "时间戳",
        "timestamps_info": "为转写的每一段标注时间（请选择语言）",
        "base_note": "这是基础模型：每个问题附带一段音频并选择任务。",
        "nav_transcribe": "转写长录音 →",
        "nav_chat": "← 返回对话",
        "tr_title": "转写录音",
        "tr_subtitle": "讲座、会议、播客：最长两小时，在停顿处分段。点击时间即可试听。",
        "tr_audio": "录音",
        "tr_language": "所说语言",
        "tr_auto": "自动识别",
        "tr_task": "任务",
        "tr_transcribe": "转写",
        "tr_translate": "翻译成英文",
        "tr_start": "开始转写",
        "tr_files": "下载：字幕（.srt、.vtt）和文本（.txt）",
        "voice_mode": "语音模式",
        "read_aloud": "朗读回答",
    },
}
# Browsers that send plain "zh" get the same text.
LABELS["zh"] = LABELS["zh-CN"]

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "empty_input": "Type a question or attach an audio first.",
        "nothing_to_regenerate": "There is no answer to regenerate yet.",
        "nothing_to_undo": "There is nothing to undo.",
        "split": "{name} is {seconds:.0f} s long: split into {windows} windows of ≤30 s.",
        "dropped": "The model saw only the latest turns: the oldest {turns} did not fit its history window.",
        "queued": "Waiting for the model: {ahead} request(s) ahead…",
        "not_uploaded": "{name} was not uploaded through this page; attach the file again.",
        "expired": "{name} is no longer on the server (uploads are deleted after a while unused); attach it again, or press Clear to start over.",
        "failed": "Sorry, something went wrong while answering; please try again.",
        "clip_failed": "Could not cut clips from {name}.",
        "error_title": "Could not answer",
        "length": "The answer reached the limit of {tokens} new tokens; raise “Max new tokens” in Settings for more.",
        "stopped": "Stopped: the answer was cut short here.",
        "thinking": "Listening and thinking…",
        "refused_file": "Remove it, or send again: it will be left out.",
        "left_out": "Left out: {reason}",
        "attached": "Attached",
        "listen": "Listen to {name}",
        "unusable": "Cannot be used: {reason}",
        "not_editable": "Only your questions can be edited.",
        "nothing_to_save": "There is no conversation to save yet.",
        "load_failed": "Could not load the conversation",
        "tr_no_audio": "Drop or record a recording first.",
        "tr_status": "{done} of {total} · {windows} window(s) done",
        "tr_left": "about {left} left",
        "tr_progress": "Transcription progress",
        "tr_play": "Play {times}",
        "voice_off": "Voice mode is off: switch it on and just talk; each pause sends what you said.",
        "voice_listening": "Listening…",
        "voice_hearing": "Hearing you…",
        "voice_thinking": "Thinking…",
        "voice_answering": "Answering… (talk to interrupt)",
        "voice_unavailable": "Voice mode could not start on the server; typing and recording still work.",
        "voice_clip": "voice {n}",
    },
    "zh-CN": {
        "empty_input": "请先输入问题或附加音频。",
        "nothing_to_regenerate": "还没有可以重新生成的回答。",
        "nothing_to_undo": "没有可以撤销的内容。",
        "split": "{name} 长 {seconds:.0f} 秒：已分成 {windows} 段（每段不超过 30 秒）。",
        "dropped": "模型只看到了最近的对话：最早的 {turns} 轮超出了它的历史窗口。",
        "queued": "正在排队：前面还有 {ahead} 个请求……",
        "not_uploaded": "{name} 不是通过本页面上传的，请重新附加该文件。",
        "expired": "{name} 已不在服务器上（长时间未使用的上传文件会被删除）；请重新附加，或点击“清空”重新开始。",
        "failed": "抱歉，回答时出错了，请重试。",
        "clip_failed": "无法从 {name} 截取片段。",
        "error_title": "无法回答",
        "length": "回答已达到 {tokens} 个新 token 的上限；可在“设置”中调高“最大生成长度”。",
        "stopped": "已停止：回答在此处中断。",
        "thinking": "正在聆听和思考……",
        "refused_file": "请移除该文件，或再次发送：它将被略过。",
        "left_out": "已略过：{reason}",
        "attached": "已附加",
        "listen": "试听 {name}",
        "unusable": "无法使用：{reason}",
        "not_editable": "只能编辑你的问题。",
        "nothing_to_save": "还没有可以保存的对话。",
        "load_failed": "无法载入对话",
        "tr_no_audio": "请先拖入或录制一段录音。",
        "tr_status": "{done} / {total} · 已完成 {windows} 段",
        "tr_left": "约剩 {left}",
        "tr_progress": "转写进度",
        "tr_play": "播放 {times}",
        "voice_off": "语音模式已关闭：打开后直接说话，每次停顿都会发送您说的话。",
        "voice_listening": "正在听…",
        "voice_hearing": "正在听您说…",
        "voice_thinking": "正在思考…",
        "voice_answering": "正在回答…（说话即可打断）",
        "voice_unavailable": "服务器无法启动语音模式；输入文字和录音仍可使用。",
        "voice_clip": "语音 {n}",
    },
}

I18N = gr.I18n(**LABELS)


def label(key: str) -> Any:
    """A label the browser translates (``gr.I18n`` key); raises KeyError for an unknown key."""
    if key not in LABELS["en"]:
        raise KeyError(key)
    return I18N(key)


def language_of(request: Any) -> str:
    """"zh-CN" when the request's Accept-Language prefers Chinese, else "en"."""
    headers = getattr(request, "headers", None) or {}
    accept = (headers.get("accept-language") or "") if hasattr(headers, "get") else ""
    first = accept.split(",")[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else "en"


def say(key: str, lang: str = "en", **values: Any) -> str:
    """A handler message in ``lang`` (falling back to English), formatted with ``values``."""
    table = MESSAGES.get(lang, MESSAGES["en"])
    return table.get(key, MESSAGES["en"][key]).format(**values)
