"""Options and runners of the CLI commands that have no module of their own to live beside (`emotune.cli` lists
every command in one registry; predict, cascade, cv and report keep theirs beside their code)."""
