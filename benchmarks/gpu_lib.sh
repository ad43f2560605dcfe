# Sourced by the GPU grids (benchmarks/run_gpu*.sh): a deadline and jobs that respect it.
# Needs: out (the grid's directory, with out/logs), budget (seconds, 0: no deadline), start (its epoch second).

left() {  # seconds to the deadline (a day when there is none)
  if (( budget )); then echo $(( start + budget - $(date +%s) )); else echo 86400; fi
}

job() {  # job NAME COMMAND...: run it under the deadline, its output in OUT/logs/NAME.log
  local name=$1; shift
  local secs; secs=$(left)
  (( secs > 5 )) || { echo "$name skipped: deadline" >> "$out/jobs.txt"; return 1; }
  echo "$name start $(( $(date +%s) - start ))s: $*" >> "$out/jobs.txt"
  timeout "$secs" "$@" > "$out/logs/$name.log" 2>&1
  local rc=$?
  echo "$name end $(( $(date +%s) - start ))s rc=$rc" >> "$out/jobs.txt"
  return $rc
}

dir_of() { echo "${1//@/-}"; }  # a task's directory name, as `bench --suite` writes it
