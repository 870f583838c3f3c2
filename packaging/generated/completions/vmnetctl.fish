# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vmnetctl_global_optspecs
    string join \n json timeout= no-ask-password h/help V/version
end

function __fish_vmnetctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vmnetctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vmnetctl_using_subcommand
    set -l cmd (__fish_vmnetctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -s V -l version -d 'Print version'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "status" -d 'Show the uplink, the guests\' gateway and DNS, and how many guests there are'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "list" -d 'List the guests: name, tap, MAC, address, state and owner'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "ls" -d 'List the guests: name, tap, MAC, address, state and owner'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "add" -d 'Add a guest: a tap owned by its user, a MAC and an address on the LAN'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "remove" -d 'Remove a guest, its route and its tap'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "rm" -d 'Remove a guest, its route and its tap'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "watch" -d 'Print events as they happen (re-homes, guests added, removed or changed, vmnetd starting and stopping) until interrupted'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "qemu-args" -d 'Print the QEMU arguments that put a guest on its tap, on one line'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "libvirt-xml" -d 'Print a libvirt <interface type=\'ethernet\'> element for a guest'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c vmnetctl -n "__fish_vmnetctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand status" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand status" -s v -l verbose -d 'Also show what vmnetd\'s packet filter dropped (spoofed sources, foreign MACs, …)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand status" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand status" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand list" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand list" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand list" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand list" -s h -l help -d 'Print help'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand ls" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand ls" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand ls" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand ls" -s h -l help -d 'Print help'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l mac -d 'MAC address of the guest\'s NIC [default: a stable one derived from the name]' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l address -d 'IPv4 address in the current subnet [default: the first free one of the pool]' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l owner -d 'The user who runs the guest\'s QEMU and owns its tap, by name or uid [default: you]' -r -f -a "(__fish_complete_users)"
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l qmp -d 'The guest\'s QMP socket, for vmnetd to tell the guest about link changes; a relative path is taken from the current directory. Not under /tmp: vmnetd.service has a private /tmp (use $XDG_RUNTIME_DIR)' -r -F
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand add" -s h -l help -d 'Print help'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand remove" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand remove" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand remove" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand remove" -s h -l help -d 'Print help'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand rm" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand rm" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand rm" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand rm" -s h -l help -d 'Print help'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand watch" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand watch" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand watch" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand qemu-args" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand qemu-args" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand qemu-args" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand qemu-args" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand libvirt-xml" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand libvirt-xml" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand libvirt-xml" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand libvirt-xml" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand completions" -l timeout -d 'How long to wait for vmnetd to answer a call, including a polkit password prompt' -r
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand completions" -l json -d 'Print JSON for scripts instead of text for people'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand completions" -l no-ask-password -d 'Never ask for a password on the terminal (polkit then decides without asking)'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "status" -d 'Show the uplink, the guests\' gateway and DNS, and how many guests there are'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "list" -d 'List the guests: name, tap, MAC, address, state and owner'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "add" -d 'Add a guest: a tap owned by its user, a MAC and an address on the LAN'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "remove" -d 'Remove a guest, its route and its tap'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "watch" -d 'Print events as they happen (re-homes, guests added, removed or changed, vmnetd starting and stopping) until interrupted'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "qemu-args" -d 'Print the QEMU arguments that put a guest on its tap, on one line'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "libvirt-xml" -d 'Print a libvirt <interface type=\'ethernet\'> element for a guest'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c vmnetctl -n "__fish_vmnetctl_using_subcommand help; and not __fish_seen_subcommand_from status list add remove watch qemu-args libvirt-xml completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
