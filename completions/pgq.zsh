
#compdef pgq

_pgq_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _PGQ_COMPLETE=complete_zsh pgq)
}

compdef _pgq_completion pgq

