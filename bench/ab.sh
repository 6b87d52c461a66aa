#!/usr/bin/env bash
# Before/after of the warm path in one run: builds bench/core at BASE (a git
# revision, default HEAD~1) and at AFTER (a revision; default the working
# tree), then runs them in turn,
# ROUNDS times each (A B A B …), so drift on a shared machine hits both
# alike. Prints each run's "throughput through Ember" line and the medians.
#
#   bench/ab.sh [BASE] [ROUNDS] [AFTER] [-- extra bench flags]
#   bench/ab.sh fc7cc74 3 HEAD -- -auth
#   BENCH=jobs bench/ab.sh fc7cc74 3 HEAD     # bench/jobs: jobs/s end to end
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD~1}
rounds=${2:-3}
after=${3:-}
[ "$after" = "--" ] && after=""
shift $(( $# >= 3 ? 3 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
bench=${BENCH:-core}
case "$bench" in core|jobs) ;; *) echo "BENCH must be core or jobs" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
trap 'for w in base after; do git worktree remove --force "$tmp/$w" >/dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/base" "$base"
(cd "$tmp/base" && go build -o "$tmp/core-before" "./bench/$bench")
if [ -n "$after" ]; then
  git worktree add -q --detach "$tmp/after" "$after"
  (cd "$tmp/after" && go build -o "$tmp/core-after" "./bench/$bench")
else
  go build -o "$tmp/core-after" "./bench/$bench"
fi
go build -o "$tmp/sim" ./examples/sim

declare -A tput ratio
for i in $(seq "$rounds"); do
  for which in before after; do
    if [ "$bench" = jobs ]; then
      out=$("$tmp/core-$which" "${extra[@]}" 2>&1)
      pct=$(grep -o '[0-9]* jobs/s end to end' <<<"$out" | grep -o '^[0-9]*')
      q=$(grep -o 'p50 [^,]*' <<<"$out" | head -1)
      echo "round $i $which: ${pct} jobs/s end to end, submit → start $q"
    else
      out=$("$tmp/core-$which" -skip-cold -sim "$tmp/sim" "${extra[@]}" 2>&1)
      # Closed-loop max req/s of the ember row, and the ember/direct ratio.
      rps=$(awk '$1=="ember"{print $9; exit}' <<<"$out")
      pct=$(grep -o 'throughput through Ember: [0-9]*%' <<<"$out" | head -1 | grep -o '[0-9]*')
      p50=$(awk '$1=="added"{print $5; exit}' <<<"$out")
      nginx=$(awk '$1=="nginx"{print $9; exit}' <<<"$out")
      # "Ember's own (ember − direct)  <CPU>µs  [<allocs>]": older builds
      # print no allocations column.
      cpu=$(awk '/^ *Ember.s own/{for(i=1;i<=NF;i++) if($i ~ /µs$/) c=$i; print c; exit}' <<<"$out")
      allocs=$(awk '/^ *Ember.s own/{print ($NF ~ /^[0-9.]+$/) ? $NF : "n/a"; exit}' <<<"$out")
      cp50=$(awk '$1=="added" && $2=="(ember"{print $(NF-1); exit} $1=="added" && $2!="(nginx"{print $(NF-1); exit}' <<<"$out")
      vs=""
      if [ -n "$nginx" ] && [ -n "$rps" ]; then
        vs=$(awk -v e="$rps" -v n="$nginx" 'BEGIN{if (n > 0) printf "%.2f", e/n; else print "n/a"}')
        [ "$vs" != n/a ] && ratio[$which]+="$vs "
        vs=" (ember ×${vs})"
      fi
      echo "round $i $which: ember closed-loop ${rps} req/s, ${pct}% of direct, added p50 ${p50} (open) ${cp50} (closed), Ember CPU ${cpu}/req, ${allocs} allocs/req; nginx ${nginx:-n/a} req/s${vs}"
      [ -n "${SHOW:-}" ] && echo "$out"
    fi
    tput[$which]+="$pct "
  done
done
for which in before after; do
  med=$(tr ' ' '\n' <<<"${tput[$which]}" | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  if [ "$bench" = jobs ]; then
    echo "median, $which: ${med} jobs/s"
  else
    echo "median throughput through Ember, $which: ${med}% of direct"
    if [ -n "${ratio[$which]:-}" ]; then
      rmed=$(tr ' ' '\n' <<<"${ratio[$which]}" | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
      echo "median closed-loop throughput of Ember over nginx's, $which: ×${rmed}"
    fi
  fi
done
