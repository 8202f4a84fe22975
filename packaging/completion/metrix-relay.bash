# bash completion for metrix-relay                                   -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/metrix-relay.

_metrix_relay() {
    local cur prev words cword
    _init_completion || return

    local commands="run status list show requeue purge report check import enqueue migrate"
    local command="" i
    for ((i = 1; i < cword; i++)); do
        if [[ " $commands " == *" ${words[i]} "* ]]; then
            command=${words[i]}
            break
        fi
    done
    if [[ -z $command ]]; then
        COMPREPLY=($(compgen -W "$commands --help" -- "$cur"))
        return
    fi

    case $prev in
        --db | --config | --dev-key-file | --cacert)
            _filedir
            return
            ;;
        --in-doubt)
            COMPREPLY=($(compgen -W "resend hold" -- "$cur"))
            return
            ;;
        --synchronous)
            COMPREPLY=($(compgen -W "full normal" -- "$cur"))
            return
            ;;
        --log-format)
            COMPREPLY=($(compgen -W "text json journal" -- "$cur"))
            return
            ;;
        --log-level)
            COMPREPLY=($(compgen -W "debug info warning error" -- "$cur"))
            return
            ;;
        --status)
            COMPREPLY=($(compgen -W "pending sending sent failed dead held" -- "$cur"))
            return
            ;;
        --by)
            COMPREPLY=($(compgen -W "event sent" -- "$cur"))
            return
            ;;
        --endpoint | --app-id | --concurrency | --lease | --timeout | --backoff-base | --backoff-max | \
            --max-attempts | --max-age | --pause-interval | --pause-max | --poll-interval | \
            --commit-interval | --busy-timeout | --progress-interval | --shutdown-timeout | --slug | \
            --poison-after | --max-rate | --admin-listen | \
            --error | --since | --until | --id | --limit | --older-than | --max-backlog-age | \
            --max-idle | --chunk | --json | --dedup-key)
            # A value of the user's; `--json` takes one only for enqueue.
            [[ $prev != --json || $command == enqueue ]] && return
            ;;
    esac

    local options
    case $command in
        run) options="--config --db --endpoint --app-id --dev-key-file --concurrency --lease --timeout
            --backoff-base --backoff-max --max-attempts --max-age --pause-interval --pause-max
            --poll-interval --commit-interval --busy-timeout --progress-interval --shutdown-timeout
            --in-doubt --synchronous --cacert --until-idle --allow-insecure-http --log-format
            --log-level --verbose --poison-after --max-rate --admin-listen --admin-allow-remote" ;;
        status) options="--db --json --check --max-backlog-age --max-idle" ;;
        list) options="--db --status --app-id --slug --error --since --until --id --limit --json --csv" ;;
        show) options="--db --json" ;;
        requeue) options="--db --status --app-id --slug --error --since --until --id --include-sent
            --dry-run --limit --json" ;;
        purge) options="--db --older-than --status --dry-run --json" ;;
        report) options="--db --since --until --by --json --csv" ;;
        check) options="--db --quick --repair --json" ;;
        import) options="--db --chunk --json" ;;
        enqueue) options="--db --json --app-id --dedup-key" ;;
        migrate) options="--db" ;;
    esac
    if [[ $cur == -* || $command != import ]]; then
        COMPREPLY=($(compgen -W "$options --help" -- "$cur"))
    else
        _filedir  # import's NDJSON file
    fi
} &&
    complete -F _metrix_relay metrix-relay
