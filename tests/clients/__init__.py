"""The real coding agents (Claude Code, Codex CLI, OpenCode) against hypereal: end-to-end
turns, the corpus of the requests they send, and its replay through every translation."""
