# kodama sh fallback launcher (used when kodama's own binary cannot run in the pod).
# Invoked as: sh -c "$SCRIPT" sh "$SCRIPT" launch HOME WORKSPACE IDLE GRACE KILLGRACE ID BASE -- CMD...
#        and: sh -c "$SCRIPT" sh "$SCRIPT" supervise DIR WORKSPACE IDLE GRACE KILLGRACE BASE STARTED -- CMD...
# The prompt arrives on stdin and is copied to prompt.txt with `cat`; it is never part of any shell
# text. BASE is the start of meta.json (a JSON object without its closing brace), built by the client.
# Same file layout as the binary runner; simpler watchdog (1 s resolution, whole-transcript grep for
# the result event); no --force; no result extraction (the client reads it from the transcript).
set -u
self=$1 mode=$2
shift 2
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
meta() { # DIR STATUS ENDED EXIT REASON PID APID  (REASON is a JSON value)
  printf '%s,"startedAt":"%s","endedAt":%s,"status":"%s","exitCode":%s,"reason":%s,"pid":%s,"agentPid":%s}\n' \
    "$base" "$started" "$3" "$2" "$4" "$5" "$6" "$7" >"$1/.meta.json.tmp" && mv -f "$1/.meta.json.tmp" "$1/meta.json"
}
unlock() { [ "$(cat "$runs/current" 2>/dev/null)" = "$id" ] && rm -f "$runs/current"; return 0; }

if [ "$mode" = launch ]; then
  home=$1 ws=$2 idle=$3 grace=$4 kgrace=$5 id=$6 base=$7
  shift 7
  [ "${1-}" = "--" ] && shift
  [ $# -gt 0 ] || { echo "kodama: the agent command is empty" >&2; exit 2; }
  [ -d "$ws" ] || { echo "kodama: the workspace $ws does not exist in the pod" >&2; exit 1; }
  runs=$home/kodama/runs
  dir=$runs/$id
  mkdir -p "$runs" || exit 1
  if ! (set -C; echo "$id" >"$runs/current") 2>/dev/null; then
    cur=$(cat "$runs/current" 2>/dev/null)
    pid=$(sed -n 's/.*"pid":\([0-9][0-9]*\).*/\1/p' "$runs/$cur/meta.json" 2>/dev/null)
    # Is that run's supervisor alive? Records live on the claude-home volume and outlive pods, so a
    # pid from an earlier pod may now belong to another process: it must be our supervisor for this
    # run directory. A record without a pid is a launch in progress, unless the lock is over a
    # minute old (its pod went away mid-launch).
    alive=
    if [ -n "$pid" ]; then
      if kill -0 "$pid" 2>/dev/null; then
        if [ -r "/proc/$pid/cmdline" ]; then
          tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$runs/$cur" && alive=1
        else
          alive=1
        fi
      fi
    elif [ -z "$(find "$runs/current" -mmin +1 2>/dev/null)" ]; then
      alive=1
    fi
    if grep -q '"status":"running"' "$runs/$cur/meta.json" 2>/dev/null && [ -n "$alive" ]; then
      echo "kodama: run $cur is still active in this session (wait for it; --force needs the kodama binary in the pod)" >&2
      exit 3
    fi
    rm -f "$runs/current"
    (set -C; echo "$id" >"$runs/current") 2>/dev/null || { echo "kodama: could not take the run lock" >&2; exit 3; }
  fi
  mkdir "$dir" || { unlock; exit 1; }
  cat >"$dir/prompt.txt" || { unlock; exit 1; }
  : >"$dir/transcript.jsonl"
  started=$(now)
  meta "$dir" running null null null null null || { unlock; exit 1; }
  echo "$id" >"$runs/last"
  if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
  nohup $detach sh -c "$self" sh "$self" supervise "$dir" "$ws" "$idle" "$grace" "$kgrace" "$base" "$started" -- "$@" \
    </dev/null >>"$dir/supervisor.log" 2>&1 &
  echo "$id"
  exit 0
fi

# supervise
dir=$1 ws=$2 idle=$3 grace=$4 kgrace=$5 base=$6 started=$7
shift 7
[ "${1-}" = "--" ] && shift
runs=${dir%/*}
id=${dir##*/}
cd "$ws" || { meta "$dir" failed "\"$(now)\"" null '"cannot enter the workspace"' $$ null; unlock; exit 1; }
set -m 2>/dev/null
( "$@" <"$dir/prompt.txt" >>"$dir/transcript.jsonl" 2>>"$dir/stderr.log" &
  echo $! >"$dir/agent.pid"; wait $!; echo $? >"$dir/exit.code" ) &
sub=$!
meta "$dir" running null null null $$ $sub
reason=
last=-1 quiet=0 after=0
while [ ! -f "$dir/exit.code" ]; do
  sleep 1
  [ -f "$dir/exit.code" ] && break
  kill -0 "$sub" 2>/dev/null || break
  size=$(wc -c <"$dir/transcript.jsonl" | tr -d ' ')
  if [ "$size" -eq "$last" ]; then quiet=$((quiet + 1)); else quiet=0 last=$size; fi
  grep -q '"type":"result"' "$dir/transcript.jsonl" && after=$((after + 1))
  if [ "$after" -gt "$grace" ]; then
    reason="watchdog: the agent printed its final result but did not exit within ${grace}s; stopped"
  elif [ "$idle" -gt 0 ] && [ "$quiet" -ge "$idle" ]; then
    reason="watchdog: no output for ${idle}s; stopped"
  fi
  if [ -n "$reason" ]; then
    apid=$(cat "$dir/agent.pid" 2>/dev/null)
    kill -TERM -"$sub" 2>/dev/null; kill -TERM $apid "$sub" 2>/dev/null
    n=0
    while [ ! -f "$dir/exit.code" ] && [ "$n" -lt "$kgrace" ]; do sleep 1; n=$((n + 1)); done
    kill -KILL -"$sub" 2>/dev/null; kill -KILL $apid "$sub" 2>/dev/null
    break
  fi
done
wait "$sub" 2>/dev/null
code=$(cat "$dir/exit.code" 2>/dev/null)
[ -n "$code" ] || code=null
if [ -n "$reason" ]; then
  status=failed
elif [ -f "$dir/stop-request" ]; then
  status=failed reason="stopped by the user"
elif [ "$code" = 0 ]; then
  status=succeeded
else
  status=failed reason="the agent exited with code $code"
fi
if [ -n "$reason" ]; then reason="\"$reason\""; else reason=null; fi
meta "$dir" "$status" "\"$(now)\"" "$code" "$reason" $$ "$(cat "$dir/agent.pid" 2>/dev/null || echo null)"
unlock
exit 0
