#!/usr/bin/env bash
# fuzz/run.sh gives a harness its scratch directory (AD_FUZZ_SCRATCH) and
# removes it however the harness ended: a harness killed by a signal (as a
# crash under ASan ends, without its exit handlers) leaves nothing in the
# temporary directories, and its failure still fails the run.
set -u
run=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# A stand-in harness: notes where its scratch is, fills it, and ends as
# told (libFuzzer's arguments are ignored).
cat >"$tmp/harness" <<'H'
#!/usr/bin/env bash
echo "$AD_FUZZ_SCRATCH" >"$NOTE"
mkdir -p "$AD_FUZZ_SCRATCH/home-1/jobs" && echo x >"$AD_FUZZ_SCRATCH/home-1/jobs/a.json"
case $END in
  kill) kill -KILL $$ ;;
  fail) exit 1 ;;
  *) exit 0 ;;
esac
H
chmod +x "$tmp/harness"
mkdir -p "$tmp/seeds"
for end in ok fail kill; do
  rc=0
  NOTE=$tmp/note END=$end bash "$run" "$tmp/harness" "$tmp/work-$end" "$tmp/seeds" - >"$tmp/out" 2>&1 || rc=$?
  scratch=$(cat "$tmp/note" 2>/dev/null)
  if [[ -z "$scratch" ]]; then
    echo "FAIL ($end): the harness got no AD_FUZZ_SCRATCH"; fail=1
  elif [[ -e "$scratch" ]]; then
    echo "FAIL ($end): $scratch left behind"; fail=1
  elif [[ $end == ok && $rc -ne 0 ]] || [[ $end != ok && $rc -eq 0 ]]; then
    echo "FAIL ($end): run.sh exited $rc"; cat "$tmp/out"; fail=1
  else
    echo "ok: a harness that ends with $end leaves no scratch (exit $rc)"
  fi
  rm -f "$tmp/note"
done
exit $fail
