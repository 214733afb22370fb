#!/bin/sh
# Kills a dead worker's agents: a tiny watchdog process, one per worker (a POSIX shell: ~1 MB resident,
# where a Python interpreter costs ~9 MB for the same few lines; Reeve is idle most of the day).
#
# The worker writes `+PGID` when it starts an agent or a wake check (each in its own process group)
# and `-PGID` when it is done. If the worker dies, even by SIGKILL, the kernel closes the pipe: on EOF
# this process kills every process group still registered, so a recovered pulse can never run twice
# at once.

# Only the worker decides when agents stop; a Ctrl+C or SIGTERM meant for it must not kill us first.
trap '' INT TERM HUP
groups=" "
while IFS= read -r line; do
  case $line in
    [+-] | [+-]*[!0-9]*) ;; # not a +PGID / -PGID line
    +*) groups="$groups${line#+} " ;;
    -*)
      case $groups in
        *" ${line#-} "*) groups="${groups%% "${line#-}" *} ${groups#* "${line#-}" }" ;;
      esac
      ;;
  esac
done
for pgid in $groups; do
  kill -KILL "-$pgid" 2>/dev/null # dash: no "--"; a negative pid is the process group
done
exit 0
