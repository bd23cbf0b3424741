
#compdef pgq-cli

_pgq_cli_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _PGQ_CLI_COMPLETE=complete_zsh pgq-cli)
}

compdef _pgq_cli_completion pgq-cli

