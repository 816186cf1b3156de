# Shell helpers shared by scripts/rgw.sh and scripts/pg.sh (sourced, not run).

# A TCP port nobody listens on. Random, so two test processes starting at once rarely pick the same.
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if [ -z "$(ss -Htln "sport = :$p")" ]; then echo "$p"; return 0; fi
  done
  echo "$(basename "$0"): no free port found" >&2
  return 1
}
