"""The OpenAI Batch API on the agent: files and batches kept in the site's JetStream.

Pure modules: ``jsonl`` (input lines → requests or per-line errors), ``records`` (file and batch
records, OpenAI's shapes, status), ``multipart`` (the upload body), ``settings``. I/O:
``store`` (object store, KV and the line stream on the leaf domain) and ``pump`` (the loops
that enqueue lines, read results from the hub and run ``edge`` lines on idle capacity).
"""
