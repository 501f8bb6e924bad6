#!/usr/bin/env bash
# Manage a local single-node Apache Kafka 4.4.0 broker (KRaft, combined
# broker+controller) on 127.0.0.1 for the tests and the demo.
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|restart|status|reset|help}
#
#   fetch    download the broker's runtime jars from Maven Central (once)
#   start    start the broker in the background and wait until it is ready;
#            a no-op when it is already running
#   stop     stop it (SIGTERM, then SIGKILL after a grace period); a no-op
#            when it is not running
#   restart  stop, then start (keeps the data)
#   status   print "running on 127.0.0.1:PORT" and exit 0, or exit 1
#   reset    stop it and delete its state (data, logs); keeps the cached jars
#
# Needs a JDK 17+ (`java`, or $JAVA_HOME) and, for `fetch`, Maven (`mvn`).
#
# Environment:
#   STREAM_EVAL_KAFKA_HOME   jar cache    (~/.cache/stream-eval/kafka-4.4.0)
#   STREAM_EVAL_KAFKA_STATE  state dir: server.properties, data/, broker.log,
#                            broker.pid   (~/.cache/stream-eval/kafka-state)
#   STREAM_EVAL_KAFKA_PORT   broker (PLAINTEXT) port (9092); the controller
#                            listens on PORT+1 unless
#   STREAM_EVAL_KAFKA_CONTROLLER_PORT  says otherwise
#   KAFKA_HEAP               max heap, e.g. 1g (512m)
#   STREAM_EVAL_KAFKA_START_TIMEOUT / _STOP_TIMEOUT   seconds (60 / 20); a start
#                            waits while the broker's log grows (it logs each
#                            partition it loads), up to
#   STREAM_EVAL_KAFKA_START_MAX  seconds in all (600)
#   STREAM_EVAL_MVN          Maven command (mvn)
#   STREAM_EVAL_MVN_ARGS     extra Maven arguments, e.g. "-o" or
#                            "-Dmaven.repo.local=/some/where"
#
# The broker runs in its own session (setsid + nohup), with its stdio on
# broker.log, so it outlives the shell or test process that started it and
# never holds that caller's pipes open.
set -euo pipefail

readonly KAFKA_VERSION=4.4.0
readonly SCALA_VERSION=2.13
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR

readonly KAFKA_HOME_DIR=${STREAM_EVAL_KAFKA_HOME:-${HOME:?HOME is not set}/.cache/stream-eval/kafka-$KAFKA_VERSION}
readonly LIBS=$KAFKA_HOME_DIR/libs
readonly FETCH_MARKER=$KAFKA_HOME_DIR/.fetched
readonly KAFKA_JAR=$LIBS/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar

STATE=${STREAM_EVAL_KAFKA_STATE:-${HOME:?HOME is not set}/.cache/stream-eval/kafka-state}
STATE=${STATE%/}
readonly STATE
readonly DATA=$STATE/data
readonly PROPS=$STATE/server.properties
readonly LOG4J=$STATE/log4j2.properties
readonly LOG=$STATE/broker.log
readonly PIDFILE=$STATE/broker.pid
readonly PORTSFILE=$STATE/ports   # "PORT CONTROLLER_PORT" of the last launch
readonly STATE_LOCK=$STATE.lock   # beside the state dir: `reset` deletes the dir

readonly HOST=127.0.0.1
readonly PORT=${STREAM_EVAL_KAFKA_PORT:-9092}
readonly CONTROLLER_PORT=${STREAM_EVAL_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
readonly HEAP=${KAFKA_HEAP:-512m}
readonly START_TIMEOUT=${STREAM_EVAL_KAFKA_START_TIMEOUT:-60}
readonly START_MAX=${STREAM_EVAL_KAFKA_START_MAX:-600}
readonly STOP_TIMEOUT=${STREAM_EVAL_KAFKA_STOP_TIMEOUT:-20}
readonly JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
readonly MVN=${STREAM_EVAL_MVN:-mvn}
# The line KafkaRaftServer logs once the broker is unfenced and serving.
readonly READY_LINE='Kafka Server started'

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for _n in PORT CONTROLLER_PORT START_TIMEOUT START_MAX STOP_TIMEOUT; do
  [[ ${!_n} =~ ^[0-9]+$ ]] || die "$_n must be a number, got '${!_n}'"
done
unset _n
[[ $PORT != "$CONTROLLER_PORT" ]] || die "broker and controller ports must differ ($PORT)"

# ---------------------------------------------------------------- locking
# One start/stop/reset at a time per state dir, one fetch at a time per jar
# cache (pytest workers and a CLI may race). The broker must not inherit the
# lock fds, or it would hold the lock for its whole life: launch() closes them.
HAVE_STATE_LOCK=0
HAVE_FETCH_LOCK=0

lock_state() {
  ((HAVE_STATE_LOCK)) && return 0
  command -v flock >/dev/null || return 0
  mkdir -p -- "$(dirname -- "$STATE_LOCK")"
  exec 9>>"$STATE_LOCK"
  flock -w $((START_MAX + STOP_TIMEOUT + 60)) 9 \
    || die "timed out waiting for another kafka.sh on $STATE ($STATE_LOCK)"
  HAVE_STATE_LOCK=1
}

lock_fetch() {
  ((HAVE_FETCH_LOCK)) && return 0
  command -v flock >/dev/null || return 0
  exec 8>>"$KAFKA_HOME_DIR/.lock"
  flock -w 900 8 || die "timed out waiting for another fetch into $KAFKA_HOME_DIR"
  HAVE_FETCH_LOCK=1
}

# ---------------------------------------------------------------- processes
# True if pid runs and is not a zombie. (PID 1 of a container or VM may never
# reap the orphaned broker: a killed one can linger as a zombie that
# `kill -0` still reports.)
pid_alive() {
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/self/stat ]]; then
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ ${stat##*) } != Z* ]]
  else
    stat=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [[ $stat != Z* ]]
  fi
}

pid_cmdline() {
  if [[ -r /proc/self/cmdline ]]; then
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
  else
    ps -o args= -p "$1" 2>/dev/null
  fi
}

# True if pid is a live broker started by this script for this state dir
# (guards against a stale pidfile whose pid was reused).
is_our_broker() {
  local cmd
  pid_alive "$1" || return 1
  cmd=$(pid_cmdline "$1") || return 1
  [[ $cmd == *" kafka.Kafka $PROPS"* ]]
}

# Print the pid of this state dir's broker; fail if none runs. Falls back to
# a /proc scan for our exact server.properties if the pidfile went missing.
broker_pid() {
  local pid="" p
  [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE")
  if [[ -n $pid ]] && is_our_broker "$pid"; then
    echo "$pid"; return 0
  fi
  if [[ -d /proc/self ]]; then
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      if [[ $p != "$$" ]] && grep -qsF "kafka.Kafka" "/proc/$p/cmdline" && is_our_broker "$p"; then
        echo "$p"; return 0
      fi
    done
  fi
  return 1
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Ready: the listener accepts connections and the broker said it started
# (KafkaRaftServer logs that after the broker is unfenced, i.e. it can serve
# metadata and create topics).
ready() {
  port_open "$PORT" && grep -qF "$READY_LINE" "$LOG" 2>/dev/null
}

# ---------------------------------------------------------------- fetch
is_fetched() {
  [[ -f $FETCH_MARKER && -f $KAFKA_JAR ]]
}

cmd_fetch() {
  local quiet=${1:-} tmp start n size
  local -a extra=()
  if is_fetched; then
    [[ $quiet == quiet ]] || log "Kafka $KAFKA_VERSION jars already fetched: $LIBS"
    return 0
  fi
  mkdir -p -- "$KAFKA_HOME_DIR"
  lock_fetch
  if is_fetched; then   # another process fetched while we waited
    return 0
  fi
  command -v "$MVN" >/dev/null || die "Maven ('$MVN') is needed to fetch the Kafka jars"
  [[ -f $SCRIPT_DIR/pom.xml ]] || die "missing $SCRIPT_DIR/pom.xml"
  read -r -a extra <<<"${STREAM_EVAL_MVN_ARGS:-}"

  log "fetching Kafka $KAFKA_VERSION jars from Maven Central… (into $LIBS)"
  start=$SECONDS
  # Work on a copy of the pom in the cache, so nothing is written into the
  # clone, and swap the jar dir in only once Maven succeeded.
  tmp=$(mktemp -d "$KAFKA_HOME_DIR/fetch.XXXXXX")
  cp -- "$SCRIPT_DIR/pom.xml" "$tmp/pom.xml"
  if ! (cd -- "$tmp" && "$MVN" -q -B -Dstyle.color=never "${extra[@]}" \
          dependency:copy-dependencies -DincludeScope=runtime \
          -DoutputDirectory="$tmp/libs") >"$tmp/mvn.log" 2>&1; then
    tail -n 40 -- "$tmp/mvn.log" >&2 || true
    rm -rf -- "$tmp"
    die "Maven could not fetch the Kafka $KAFKA_VERSION jars (see above)"
  fi
  if [[ ! -f $tmp/libs/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar ]] \
     || ! compgen -G "$tmp/libs/log4j-slf4j-impl-*.jar" >/dev/null; then
    ls -- "$tmp/libs" >&2 || true
    rm -rf -- "$tmp"
    die "Maven ran, but the Kafka jar or the log4j slf4j binding is missing"
  fi
  rm -rf -- "$LIBS" "$FETCH_MARKER"
  mv -- "$tmp/libs" "$LIBS"
  rm -rf -- "$tmp"
  n=$(find "$LIBS" -name '*.jar' | wc -l)
  size=$(du -sh -- "$LIBS" | cut -f1)
  printf 'kafka_%s:%s fetched %s\n' "$SCALA_VERSION" "$KAFKA_VERSION" "$(date -u +%FT%TZ)" >"$FETCH_MARKER"
  log "fetched $((n)) jars ($size) in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- start
need_java() {
  command -v "$JAVA" >/dev/null || die "java not found (a JDK 17+ is needed; set JAVA_HOME or PATH)"
}

write_config() {
  cp -- "$SCRIPT_DIR/log4j2.properties" "$LOG4J"
  cat >"$PROPS.tmp" <<EOF
# Written by deploy/kafka/kafka.sh on every start: edit the script, not this.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$DATA
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true
num.recovery.threads.per.data.dir=1

# One broker: internal topics with replication factor 1 and min ISR 1.
# One partition each instead of 50: fewer logs to create, load and flush on a
# test broker; a single node gains nothing from spreading groups out.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Consumer groups form at once instead of after the default 3 s delay.
group.initial.rebalance.delay.ms=0

# Room for batched messages (many traces per Kafka message).
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
EOF
  mv -f -- "$PROPS.tmp" "$PROPS"
}

# Run a Kafka CLI tool class. Its log output goes to stderr at WARN, so the
# tool's own stdout stays clean (`random-uuid` prints only the id).
run_tool() {
  "$JAVA" -Xmx256m -cp "$LIBS/*" \
    -Dlog4j2.configurationFile="$LOG4J" \
    -Dstream_eval.log.level=WARN -Dstream_eval.log.target=SYSTEM_ERR \
    "$@"
}

# A broker of this state dir that runs on other ports than asked for (the
# port variables changed while it ran) must be stopped first. (Restarting
# formatted storage on new ports is fine: the single voter follows its
# listener config.)
check_running_ports() {
  local want="$PORT $CONTROLLER_PORT" have=""
  [[ -f $PORTSFILE ]] && have=$(<"$PORTSFILE")
  [[ -z $have || $have == "$want" ]] \
    || die "the broker of $STATE runs on ports $have (broker, controller), not $want: run '$0 stop' with the old STREAM_EVAL_KAFKA_PORT, or use another STREAM_EVAL_KAFKA_STATE"
}

format_once() {
  local id
  [[ -f $DATA/meta.properties ]] && return 0
  log "formatting KRaft storage in $DATA"
  id=$(run_tool kafka.tools.StorageTool random-uuid | tail -n 1 | tr -d '[:space:]') \
    || die "kafka.tools.StorageTool random-uuid failed"
  [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "unexpected cluster id from StorageTool random-uuid: '$id'"
  mkdir -p -- "$DATA"
  # It prints the whole bootstrap metadata; show that only if it fails.
  if ! run_tool kafka.tools.StorageTool format -t "$id" -c "$PROPS" --standalone \
         >"$STATE/format.log" 2>&1; then
    cat -- "$STATE/format.log" >&2
    die "kafka.tools.StorageTool format failed"
  fi
  [[ -f $DATA/meta.properties ]] || die "StorageTool format wrote no $DATA/meta.properties"
  log "formatted (cluster id $id)"
}

# Start the JVM in the background; sets LAUNCHED_PID.
LAUNCHED_PID=
launch() {
  local -a jvm
  read -r -a jvm <<<"-Xmx$HEAP -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
  [[ -f $LOG ]] && mv -f -- "$LOG" "$LOG.1"
  rm -f -- "$PIDFILE"
  : >"$LOG"
  echo "$PORT $CONTROLLER_PORT" >"$PORTSFILE"
  # setsid: own session, so no terminal hangup or process-group signal from
  # the caller reaches it; nohup: ignore SIGHUP anyway. `bash -c` writes its
  # own pid and execs java, so the pidfile holds the JVM's pid even if setsid
  # had to fork. Close the lock fds (8, 9) and detach stdio from the caller.
  (
    cd -- "$STATE"
    exec 8>&- 9>&- >/dev/null
    # shellcheck disable=SC2016  # $$ and $0 are for the inner bash
    exec setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
      "$JAVA" "${jvm[@]}" -cp "$LIBS/*" \
      -Dlog4j2.configurationFile="$LOG4J" \
      kafka.Kafka "$PROPS" </dev/null >>"$LOG" 2>&1
  ) &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $PIDFILE ]] && break
    sleep 0.05
  done
  [[ -s $PIDFILE ]] || die "the broker process did not start (no $PIDFILE)"
  LAUNCHED_PID=$(<"$PIDFILE")
}

# Wait until ready; on failure show the log, stop what was started, exit 1.
# A broker with many partitions logs each one as it loads it, which can take minutes:
# while its log grows the wait goes on, up to START_MAX; it gives up after START_TIMEOUT
# seconds without a new line.
wait_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT)) hard=$((SECONDS + START_MAX))
  local size=0 now_size
  while :; do
    ready && return 0
    now_size=$(stat -c %s -- "$LOG" 2>/dev/null || echo 0)
    if ((now_size != size)); then
      size=$now_size
      deadline=$((SECONDS + START_TIMEOUT < hard ? SECONDS + START_TIMEOUT : hard))
    fi
    if ! pid_alive "$pid"; then
      log "the broker exited during startup; last lines of $LOG:"
      tail -n 40 -- "$LOG" >&2 || true
      rm -f -- "$PIDFILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "the broker was not ready: ${START_TIMEOUT}s without progress, or ${START_MAX}s in all; last lines of $LOG:"
      tail -n 40 -- "$LOG" >&2 || true
      stop_pid "$pid"
      exit 1
    fi
    sleep 0.2
  done
}

cmd_start() {
  local pid start=$SECONDS
  cmd_fetch quiet
  need_java
  mkdir -p -- "$STATE"
  lock_state
  if pid=$(broker_pid); then
    check_running_ports
    if ready; then
      log "already running on $HOST:$PORT (pid $pid)"
      return 0
    fi
    log "a broker (pid $pid) is starting; waiting until it is ready"
    wait_ready "$pid"
    log "running on $HOST:$PORT (pid $pid)"
    return 0
  fi
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $HOST:$p is taken by another process (not this script's broker for $STATE)"
  done
  write_config
  format_once
  log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (log: $LOG)"
  launch
  pid=$LAUNCHED_PID
  wait_ready "$pid"
  log "running on $HOST:$PORT (pid $pid), ready in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- stop etc.
stop_pid() {
  local pid=$1 deadline
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if pid_alive "$pid"; then
    log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    pid_alive "$pid" && die "could not kill pid $pid"
  fi
  rm -f -- "$PIDFILE"
}

cmd_stop() {
  local pid start=$SECONDS
  if [[ ! -d $STATE ]]; then
    log "not running"
    return 0
  fi
  lock_state
  if pid=$(broker_pid); then
    log "stopping the broker (pid $pid)…"
    stop_pid "$pid"
    log "stopped in $((SECONDS - start))s"
  else
    rm -f -- "$PIDFILE"
    log "not running"
  fi
}

cmd_status() {
  local pid
  if pid=$(broker_pid) && port_open "$PORT"; then
    echo "running on $HOST:$PORT"
    return 0
  fi
  echo "not running"
  return 1
}

cmd_reset() {
  local real
  cmd_stop
  lock_state
  [[ -e $STATE ]] || { log "nothing to reset ($STATE does not exist)"; return 0; }
  real=$(cd -- "$STATE" && pwd -P)
  case $real in
    / | "$(cd -- "$HOME" && pwd -P)" | "$KAFKA_HOME_DIR" | "$SCRIPT_DIR"*)
      die "refusing to delete $real" ;;
  esac
  rm -rf -- "$STATE"
  log "deleted $STATE (cached jars kept in $LIBS)"
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
  local cmd=${1:-help}
  case $cmd in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
