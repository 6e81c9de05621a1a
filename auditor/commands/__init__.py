"""One module per subcommand: each drives an assembled audit (or the policy engine)."""
