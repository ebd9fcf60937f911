"""The page's components, laid out; no behaviour (see :mod:`app.events`) and no model access.

Header (logo, title, the model and device) / chat / input with microphone and upload / Stop,
Regenerate, Undo, Clear / the task selector for base checkpoints / settings / examples.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from model.conversation import BASE_TASK_LANGUAGES, BASE_TASKS
from model.params import PARAMS, GenerationParams, resolve

from .backend import BackendInfo
from .config import DemoConfig
from .examples import Example
from .i18n import label

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Listed extensions, not "audio": Gradio's "audio" filter rejects .webm (its mimetype is video/webm).
#: Video containers are listed too: their audio track is what is used.
AUDIO_FILE_TYPES = [".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a", ".aac", ".mp4", ".mov", ".mkv"]
#: Gradio turns pasted text longer than its limit into an attached "pasted_text.txt", which would then be
#: refused as a file that is not audio; a long question stays text (and is refused only if it is beyond
#: the model's context, with a sentence saying so).
MAX_PLAIN_TEXT_LENGTH = 1_000_000


@dataclass
class VoiceLayout:
    """Voice mode's components: the switch, read-aloud, the status line, the streaming microphone (out of
    sight: the switch starts and stops it) and the hidden values its stream sets (see :mod:`app.voice`)."""

    mode: gr.Checkbox
    read_aloud: gr.Checkbox
    status: gr.HTML
    mic: gr.Audio
    speech: gr.Number
    barge: gr.Number
    utterance: gr.Textbox


def build_voice() -> VoiceLayout:
    with gr.Row(elem_id="voice", equal_height=True):
        mode = gr.Checkbox(False, label=label("voice_mode"), elem_id="voice-mode", scale=0, min_width=0, container=False)
        read_aloud = gr.Checkbox(False, label=label("read_aloud"), elem_id="read-aloud", scale=0, min_width=0,
                                 container=False)
        status = gr.HTML("", elem_id="voice-status", padding=False)
    mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath", label="voice mode microphone",
                   elem_id="voice-mic", elem_classes=["offscreen"], show_label=False)
    return VoiceLayout(mode=mode, read_aloud=read_aloud, status=status, mic=mic,
                       speech=gr.Number(0, visible=False, label="speech"),
                       barge=gr.Number(0, visible=False, label="barge"),
                       utterance=gr.Textbox("", visible=False, label="utterance"))


@dataclass
class Layout:
    """Handles on the components the events use."""

    chatbot: gr.Chatbot
    textbox: gr.MultimodalTextbox
    attached: gr.HTML
    attached_paths: gr.Textbox  # the input's file paths as JSON, set in the browser (see app.events)
    stop_btn: gr.Button
    regen_btn: gr.Button
    undo_btn: gr.Button
    clear_btn: gr.Button
    save_btn: gr.Button
    save_file: gr.DownloadButton
    load_btn: gr.UploadButton
    system_prompt: gr.Textbox
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    repetition_penalty: gr.Slider
    seed: gr.Number
    task: gr.Radio
    language: gr.Dropdown
    timestamps: gr.Checkbox
    api_trigger: gr.Button
    api_output: gr.Textbox
    api_task: list[Any]  # /chat's task, language and timestamps (base checkpoints), empty by default
    api_history: gr.JSON  # /chat's history: plain JSON, checked by the handler (string or list contents)
    voice: VoiceLayout | None = None  # None where the backend has no voice detector (a remote server)

    @property
    def settings(self) -> list[Any]:
        """The generation settings, in the order of the handlers' and the API's parameters."""
        return [self.system_prompt, self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                self.repetition_penalty, self.seed]

    @property
    def input_lock(self) -> list[Any]:
        """What busy/idle updates toggle: the input and the buttons that must wait for a reply."""
        return [self.textbox, self.stop_btn, self.regen_btn, self.undo_btn]


def title_key(info: BackendInfo) -> str:
    """The label key of the page's title, which names the model family (the tab title uses it too)."""
    return "title_qwen_audio" if info.model_family == "Qwen-Audio" else "title"


#: The chat's height before it grows (``scale=1`` in a ``fill_height`` page: it takes what the window
#: leaves beside the header, the input and the action row, on a desktop and a phone alike).
CHAT_MIN_HEIGHT = 300


def chat_example(example: Example, is_base: bool) -> dict[str, Any]:
    """An example as the empty chat shows it: its question (a base checkpoint's are the clips alone, the
    task selector says what to do with them) and its clips, named."""
    names = " + ".join(Path(f).name for f in example.files)
    text = "" if is_base else example.text
    return {"text": text, "files": list(example.files), "display_text": f"{text} — {names}" if text else names}


def header(info: BackendInfo, title: str, subtitle: str, link: str, href: str) -> None:
    """Logo, title (a label key), subtitle, the link (label key, address) to the other page, and the model badge."""
    logo = (STATIC_DIR / "logo.svg").read_text(encoding="utf-8")
    badge_class = "random" if info.random_weights else ""
    badge = f'<div id="model-badge" class="{badge_class}"><code>{html.escape(info.label)}</code></div>'
    with gr.Row(elem_id="header"):
        gr.HTML(logo, elem_id="logo", js_on_load=None)
        with gr.Column(scale=20, elem_id="title"):
            # One translation key per component: the browser translates whole values only.
            with gr.Row(elem_id="title-row"):
                gr.Markdown(label(title), elem_id="title-text")
                gr.Button(label(link), link=href, link_target="_self", size="sm", variant="secondary",
                          elem_id="page-link", scale=0, min_width=0)
            gr.Markdown(label(subtitle), elem_id="subtitle")
            gr.HTML(badge, js_on_load=None)


def _header(info: BackendInfo) -> None:
    header(info, title_key(info), "subtitle_base" if info.family == "base" else "subtitle", "nav_transcribe", "transcribe")


def _icon(name: str) -> str:
    return str(STATIC_DIR / "icons" / f"{name}.svg")


def slider(name: str, defaults: GenerationParams, **options: Any) -> gr.Slider:
    """The slider of a generation setting: its range from :data:`model.params.PARAMS`, its value the default."""
    low, high, step = PARAMS[name].slider
    return gr.Slider(low, high, value=getattr(defaults, name), step=step, **options)


def build_layout(info: BackendInfo, config: DemoConfig, examples: list[Example],
                 defaults: GenerationParams | None = None, voice: bool = False) -> Layout:
    """Create the components inside the current ``gr.Blocks`` context and return handles on them.

    ``defaults``: the settings the sliders start at (the conversation service's, which requests that
    set nothing get too). ``voice``: offer voice mode (its switch sits between the input and the buttons)."""
    defaults = resolve(defaults or GenerationParams())
    is_base = info.family == "base"
    _header(info)
    if is_base:  # a base checkpoint takes one audio per request
        examples = [e for e in examples if len(e.files) == 1]
    chatbot = gr.Chatbot(
        show_label=False, elem_id="chatbot", scale=1, height=CHAT_MIN_HEIGHT,
        buttons=["copy", "copy_all"], feedback_options=None, group_consecutive_messages=True, autoscroll=True,
        placeholder=label("empty_base" if is_base else "empty_chat"),
        # The empty chat offers the examples; a click on one fills the input (see ChatHandlers.example).
        examples=[chat_example(e, is_base) for e in examples] or None,
        editable=None if is_base else "user",
    )
    with gr.Row(visible=is_base, elem_id="task-row"):
        task = gr.Radio(
            [(label(f"task_{t}"), t) for t in BASE_TASKS], value="transcribe", label=label("task"),
            elem_id="task", scale=3,
        )
        language = gr.Dropdown(
            [("auto", "")] + [(name, code) for code, name in BASE_TASK_LANGUAGES.items()], value="",
            label=label("language"), elem_id="language", scale=1,
        )
        # Qwen-Audio's base model can time its transcript (<|2.33|> tokens, shown as times with clips).
        timestamps = gr.Checkbox(False, label=label("timestamps"), info=label("timestamps_info"), elem_id="timestamps",
                                 visible=is_base and info.model_family == "Qwen-Audio", scale=1)
    if is_base:
        gr.Markdown(label("base_note"), elem_id="notes")
    # The clips in the input, by name and duration, with a player (the input's own thumbnails are bare icons).
    attached = gr.HTML("", elem_id="attached", padding=False)
    attached_paths = gr.Textbox("[]", visible=False, label="attached files")
    textbox = gr.MultimodalTextbox(
        sources=["microphone", "upload"], file_types=AUDIO_FILE_TYPES, file_count="multiple",
        placeholder=label("placeholder"), show_label=False, elem_id="input", autofocus=True,
        submit_btn=True, stop_btn=False, max_plain_text_length=MAX_PLAIN_TEXT_LENGTH,
    )
    voice_layout = build_voice() if voice else None
    with gr.Row(elem_id="actions"):
        stop_btn = gr.Button(label("stop"), icon=_icon("stop"), variant="secondary", interactive=False, elem_id="stop",
                             size="sm")
        regen_btn = gr.Button(label("regenerate"), icon=_icon("regenerate"), elem_id="regenerate", size="sm")
        undo_btn = gr.Button(label("undo"), icon=_icon("undo"), elem_id="undo", size="sm")
        clear_btn = gr.Button(label("clear"), icon=_icon("clear"), elem_id="clear", size="sm")
        # Save builds the zip on demand and hands it to the (hidden) download button, which the page clicks.
        save_btn = gr.Button(label("save"), icon=_icon("save"), elem_id="save", size="sm")
        load_btn = gr.UploadButton(label("load"), icon=_icon("load"), file_types=[".zip"], file_count="single",
                                   elem_id="load", size="sm")
    save_file = gr.DownloadButton("download", elem_id="save-file", elem_classes=["offscreen"])
    with gr.Accordion(label("settings"), open=False, elem_id="settings"):
        system_prompt = gr.Textbox(config.system_prompt, label=label("system_prompt"), lines=2,
                                   info=label("system_prompt_info"), elem_id="system-prompt", visible=not is_base)
        with gr.Row():
            low, _, step = PARAMS["max_new_tokens"].slider
            max_new_tokens = gr.Slider(low, config.max_new_tokens_limit, value=defaults.max_new_tokens, step=step,
                                       label=label("max_new_tokens"), elem_id="max-new-tokens")
            temperature = slider("temperature", defaults, label=label("temperature"), info=label("temperature_info"),
                                 elem_id="temperature")
        with gr.Row():
            top_p = slider("top_p", defaults, label=label("top_p"), elem_id="top-p")
            top_k = slider("top_k", defaults, label=label("top_k"), elem_id="top-k")
        with gr.Row():
            repetition_penalty = slider("repetition_penalty", defaults, label=label("repetition_penalty"),
                                        elem_id="repetition-penalty")
            seed = gr.Number(defaults.seed if defaults.seed is not None else -1, precision=0, minimum=-1,
                             label=label("seed"), info=label("seed_info"), elem_id="seed")
    # The /chat API's trigger and result: never shown, never touched by the page.
    api_trigger = gr.Button("chat api", visible=False)
    api_output = gr.Textbox(visible=False, label="reply")
    # Not the chatbot: Gradio would refuse {"role": "user", "content": "hello"} (a string content) with an
    # opaque error before the handler could accept it or say what is wrong.
    api_history = gr.JSON([], visible=False, label="history")
    api_task = [gr.Textbox("", visible=False, label="task"), gr.Textbox("", visible=False, label="language"),
                gr.Checkbox(False, visible=False, label="timestamps")]
    return Layout(
        chatbot=chatbot, textbox=textbox, attached=attached, attached_paths=attached_paths, stop_btn=stop_btn, regen_btn=regen_btn, undo_btn=undo_btn,
        clear_btn=clear_btn, save_btn=save_btn, save_file=save_file, load_btn=load_btn, system_prompt=system_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty, seed=seed, task=task, language=language, timestamps=timestamps,
        api_trigger=api_trigger, api_output=api_output, api_task=api_task, api_history=api_history,
        voice=voice_layout,
    )
