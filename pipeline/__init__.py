"""The studio's engine: one pipeline object from LLM prompt encoding to finished PNG.

Never imports gradio. Heavy libraries (torch, diffusers) are imported by the submodules that
need them, so `import pipeline` stays cheap.
"""
