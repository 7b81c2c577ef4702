"""The daemon and its edges: SMTP, pipe, IMAP, parsing, sending and the CLI."""
