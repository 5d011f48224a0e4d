"""The dashboard's pages, one module each; ``layout`` holds the shell and shared pieces."""
