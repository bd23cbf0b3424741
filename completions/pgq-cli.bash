
_pgq_cli_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _PGQ_CLI_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _pgq_cli_completion pgq-cli

