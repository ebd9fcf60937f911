# Qwen2-Audio chat demo on a GPU: docker build -t qwen-audio-demo . && see the README for `docker run`.
# Model weights are NOT baked in: they download on first start into the Hugging Face cache volume.
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No system packages: audio is decoded in-process by PyAV, whose wheels bundle FFmpeg's libraries.

# Run as an ordinary user with uid 1000 (what Hugging Face Docker Spaces expect).
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data/huggingface \
    && chown -R user:user /data/huggingface

WORKDIR /app
# Dependencies first, so code changes do not reinstall them. The base image's torch satisfies torch>=2.4.
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY --chown=user:user . .

USER user
ENV HF_HOME=/data/huggingface \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
VOLUME ["/data/huggingface"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]

CMD ["python", "web_demo_audio.py"]
