"""EAGLE-IAD: a PatchCore expert and threshold-guided prompting for frozen multimodal LLMs."""

#: Raised with each release (pyproject.toml's ``version`` too): models, exports, /healthz and ``eagle --version``
#: record it, so an admin tells releases apart by it (two releases a week apart both said 0.1.0 once). What reads
#: a file decides by its schema number, never by this.
__version__ = "0.3.0"
