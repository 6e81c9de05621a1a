#!/usr/bin/env bash
# Record the proxy captures of pcaps/real (section "Recorded here" of SOURCES.md) with real
# tools on loopback: Dante (danted, SOCKS4/4a/5) and MicroSocks (SOCKS5 with RFC 1929
# username/password) in front of an `openssl s_server`; curl as the client; nghttp against
# nghttpd for cleartext HTTP/2 with prior knowledge. Needs root (dumpcap on lo, danted) and
# the Debian packages dante-server microsocks nghttp2-client nghttp2-server curl openssl
# wireshark-common. Not byte-for-byte reproducible (ports, ISNs, TLS randoms and times differ
# per run); the facts the tests read from them (targets, SNIs, :authority) are.
#
#   bash pcaps/real/lab/make_proxy_captures.sh [OUTDIR]      # default: pcaps/real
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(cd "${1:-$here/..}" && pwd)"
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

TLS=8443                    # the "destination" behind the proxies (every address); curl calls it localhost
DANTE=127.0.0.3:1080
MICRO=127.0.0.4:1081
H2C=8080

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
openssl s_server -quiet -accept "$TLS" -www -cert "$tmp/cert.pem" -key "$tmp/key.pem" \
    >/dev/null 2>&1 & pids+=($!)
cat > "$tmp/danted.conf" <<EOF
logoutput: $tmp/danted.log
internal: ${DANTE%:*} port = ${DANTE#*:}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 protocol: tcp }
EOF
danted -f "$tmp/danted.conf" & pids+=($!)
# A throw-away lab credential (this is what RFC 1929 sends in the clear).
microsocks -i "${MICRO%:*}" -p "${MICRO#*:}" -u lab -P not-a-secret >/dev/null 2>&1 & pids+=($!)
mkdir -p "$tmp/www" && printf 'hello\n' > "$tmp/www/index.html"
nghttpd --no-tls -d "$tmp/www" "$H2C" >/dev/null 2>&1 & pids+=($!)
sleep 1

capture() {   # capture NAME FILTER COMMAND... : one pcap of lo while COMMAND runs
  local name="$1" filter="$2"; shift 2
  dumpcap -q -i lo -f "$filter" -w "$tmp/$name.pcapng" >/dev/null 2>&1 & local cap=$!
  sleep 1
  "$@" >/dev/null 2>&1 || true
  sleep 1
  kill -INT "$cap"; wait "$cap" || true
  # classic pcap (Ethernet), like the rest of pcaps/real
  editcap -F pcap "$tmp/$name.pcapng" "$out/$name.pcap"
}

url="https://localhost:$TLS/"
capture socks-curl-dante-v4-v4a-v5-tls "tcp port ${DANTE#*:}" bash -c "
  curl -sk --max-time 5 --socks4 $DANTE $url
  curl -sk --max-time 5 --socks4a $DANTE $url
  curl -sk --max-time 5 --socks5 $DANTE $url
  curl -sk --max-time 5 --socks5-hostname $DANTE $url"
capture socks5-userpass-curl-microsocks-tls "tcp port ${MICRO#*:}" \
  curl -sk --max-time 5 --socks5-hostname "lab:not-a-secret@$MICRO" "$url"
capture h2c-prior-knowledge-nghttp "tcp port $H2C" \
  nghttp -n "http://localhost:$H2C/" "http://localhost:$H2C/index.html"
ls -l "$out"/socks*.pcap "$out"/h2c-*.pcap
