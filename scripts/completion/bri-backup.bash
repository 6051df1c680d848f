# bash completion for bri-backup: commands, options, and backup names of the
# store (read with `bri-backup list --json`, so --db and --backup-dir given on
# the line are honoured). Install: source this file, or copy it to
# /usr/share/bash-completion/completions/bri-backup.

_bri_backup_names()
{
	local -a global=()
	local i
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case "${COMP_WORDS[i]}" in
		--db | --backup-dir | --key-file) global+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
		--follow-symlink | --force) global+=("${COMP_WORDS[i]}") ;;
		esac
	done
	"${COMP_WORDS[0]}" "${global[@]}" --json list 2>/dev/null |
		sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p'
}

_bri_backup()
{
	local cur prev cmd i
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	local commands="create list verify restore cleanup delete rehearse pin unpin stats health metrics diff export"
	local globals="--db --backup-dir --retention-days --keep-min --keep-hourly --keep-daily --keep-weekly --keep-monthly --keep-yearly --keep-within --on-success --on-failure --hook-timeout --json --follow-symlink --force --key-file --help --version"

	case "$prev" in
	--db | --backup-dir | --key-file | --on-success | --on-failure)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--retention-days | --keep-min | --keep-hourly | --keep-daily | --keep-weekly | --keep-monthly | --keep-yearly | --keep-within | --hook-timeout | --reason | --warn-age | --crit-age | --warn-count | --crit-count | --name | --max-age-hours | --min-backups | --table)
		COMPREPLY=()
		return
		;;
	esac

	cmd=
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		--db | --backup-dir | --key-file | --retention-days | --keep-min | --keep-hourly | --keep-daily | --keep-weekly | --keep-monthly | --keep-yearly | --keep-within | --on-success | --on-failure | --hook-timeout) ((i++)) ;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]}
			break
			;;
		esac
	done

	if [ -z "$cmd" ]; then
		COMPREPLY=($(compgen -W "$commands $globals" -- "$cur"))
		return
	fi
	case "$cmd" in
	create) COMPREPLY=($(compgen -W "--name --verify --cleanup --help" -- "$cur")) ;;
	cleanup) COMPREPLY=($(compgen -W "--dry-run --help" -- "$cur")) ;;
	health) COMPREPLY=($(compgen -W "--max-age-hours --min-backups --warn-age --crit-age --warn-count --crit-count --nagios --help" -- "$cur")) ;;
	rehearse)
		if [[ "$prev" == --checks || "$prev" == --scratch ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		elif [[ "$cur" == -* ]]; then
			COMPREPLY=($(compgen -W "--checks --scratch --help" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "latest $(_bri_backup_names)" -- "$cur"))
		fi
		;;
	pin | unpin)
		if [[ "$cur" == -* ]]; then
			local opts="--help"
			[ "$cmd" = pin ] && opts="--reason --help"
			COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$(_bri_backup_names)" -- "$cur"))
		fi
		;;
	diff | export)
		if [[ "$cur" == -* ]]; then
			local opts="--table --summary --json --help"
			[ "$cmd" = export ] && opts="--table --schema --help"
			COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "latest live $(_bri_backup_names)" -- "$cur"))
		fi
		;;
	verify | restore | delete)
		if [[ "$cur" == -* ]]; then
			local opts="--help"
			[ "$cmd" = restore ] && opts="--no-verify --help"
			COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		elif [[ "$cur" == */* || "$cur" == .* ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		elif [ "$cmd" = delete ]; then
			COMPREPLY=($(compgen -W "$(_bri_backup_names)" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "latest $(_bri_backup_names)" -- "$cur"))
		fi
		;;
	*) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
	esac
}

complete -F _bri_backup bri-backup
