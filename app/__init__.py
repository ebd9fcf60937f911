"""The browser chat for Qwen2-Audio (Gradio). Knows nothing of torch: it talks to a ChatBackend.

- ``app.config``: ``load_config()`` builds the one ``DemoConfig`` (defaults <- YAML <- env <- CLI).
- ``app.demo``: ``build_demo(worker, config)`` builds the page for a backend; ``launch_demo`` serves it.
- ``app.backend``: the ``ChatBackend`` protocol a worker (local or remote) satisfies.

Imports are left to the submodules so that ``--help`` answers without loading Gradio.
"""
