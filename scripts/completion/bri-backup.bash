# bash completion for bri-backup: commands, options, and backup names of the
# store (read with `bri-backup list --json`, so the global options given on
# the line, such as --db and --backup-dir, are honoured). The commands and options are not written here: they
# come from bri-backup's own command table (`bri-backup --completion-table`),
# so a new command or option completes as soon as it is in the program.
# Install: source this file, or copy it to
# /usr/share/bash-completion/completions/bri-backup.

_bri_backup_names()
{
	# The global options on the line (the store's place, a key, ...), so
	# that list reads the store the command will use.
	local -a global=()
	local i t
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		t=${takes[global${COMP_WORDS[i]}]}
		if [ "$t" = flag ]; then
			global+=("${COMP_WORDS[i]}")
		elif [ -n "$t" ]; then
			global+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}")
			((i++))
		fi
	done
	"${COMP_WORDS[0]}" "${global[@]}" --json list 2>/dev/null |
		sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p'
}

_bri_backup()
{
	local cur prev cmd i kind scope long short arg complete synopsis
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	local commands="" before="" globals=""
	# Per option (--long, and -s): what its argument completes to ("-": none,
	# "flag": it takes none); per command: its options and its arguments.
	local -A takes=() cmd_opts=() cmd_args=()

	while IFS=$'\t' read -r kind scope long short arg complete synopsis; do
		case "$kind" in
		command)
			commands+=" $scope"
			cmd_args[$scope]=$long
			;;
		option)
			case "$scope" in
			main) before+=" $long" ;;
			global)
				before+=" $long"
				globals+=" $long"
				;;
			*) cmd_opts[$scope]+=" $long" ;;
			esac
			# Global options are accepted after the command too.
			if [ "$arg" = - ]; then
				takes[$scope$long]=flag
				[ "$short" != - ] && takes[$scope$short]=flag
			else
				takes[$scope$long]=$complete
				[ "$short" != - ] && takes[$scope$short]=$complete
			fi
			;;
		esac
	done < <("${COMP_WORDS[0]}" --completion-table 2>/dev/null)

	# The command: the first word that is neither an option nor an option's argument.
	cmd=
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-*)
			local t=${takes[global${COMP_WORDS[i]}]}
			[ -n "$t" ] && [ "$t" != flag ] && ((i++))
			;;
		*)
			cmd=${COMP_WORDS[i]}
			break
			;;
		esac
	done

	# The argument of an option: a file, or nothing to offer.
	local value=${takes[global$prev]:-${takes[main$prev]}}
	[ -n "$cmd" ] && [ -z "$value" ] && value=${takes[$cmd$prev]}
	if [ -n "$value" ] && [ "$value" != flag ]; then
		if [[ ",$value," == *,file,* ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=()
		fi
		return
	fi

	if [ -z "$cmd" ]; then
		COMPREPLY=($(compgen -W "$commands $before" -- "$cur"))
		return
	fi
	local what=${cmd_args[$cmd]:--}
	if [[ "$cur" == -* || "$what" == - ]]; then
		# Its own options, then the global ones (accepted after it too).
		COMPREPLY=($(compgen -W "${cmd_opts[$cmd]} $globals" -- "$cur"))
		return
	fi
	if [[ ",$what," == *,file,* && ( "$cur" == */* || "$cur" == .* ) ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
		return
	fi
	local words=""
	[[ ",$what," == *,latest,* ]] && words+=" latest"
	[[ ",$what," == *,live,* ]] && words+=" live"
	[[ ",$what," == *,names,* ]] && words+=" $(_bri_backup_names)"
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -F _bri_backup bri-backup
