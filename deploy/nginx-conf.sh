#!/usr/bin/env sh
# Print an nginx.conf that spreads new browsers over voicechat replicas and keeps each one on its own.
#
#   deploy/nginx-conf.sh LISTEN_PORT STATE_DIR REPLICA_ADDR...     e.g. 8080 /tmp/vc-nginx 127.0.0.1:8501 127.0.0.1:8502
#
# Why a cookie and not ip_hash: a Streamlit browser session is a websocket (/_stcore/stream) plus
# HTTP to ONE process that holds its engine, transcript and WebRTC peer. ip_hash would put every
# browser behind one office NAT (or every test browser on 127.0.0.1) on one replica. Here a browser
# without the cookie goes round robin; the response sets `voicechat_replica=rN` from the replica
# that answered, and every later request (page, component iframe, websocket, reconnects) carries it
# and goes to rN. If rN is down the request goes to another replica (its `backup` list) and the
# cookie follows it there. Open-source nginx only (no `sticky` directive needed).
#
# REPLICA_ADDR must be IP:port as nginx reports it in $upstream_addr (the cookie is mapped from it).
# STATE_DIR holds the pid file, logs and temp files, so nginx runs as any user on an unprivileged
# port without touching the system service. One worker: one round-robin counter, so consecutive
# new browsers alternate replicas exactly (raise it for heavy HTTP traffic; routing stays sticky).
set -eu
if [ "$#" -lt 3 ]; then
  echo "usage: $0 LISTEN_PORT STATE_DIR REPLICA_ADDR... (IP:port of each replica)" >&2
  exit 2
fi
listen=$1
state=$2
shift 2

echo "worker_processes 1;"
echo "pid $state/nginx.pid;"
echo "error_log $state/error.log warn;"
echo '# On `nginx -s reload` the old worker closes its open websockets after 5 s; each browser'"'"'s Streamlit'
echo "# reconnects through the new one to the same replica (the cookie) and resumes its session. The"
echo "# WebRTC audio never passes nginx, so a call goes on meanwhile."
echo "worker_shutdown_timeout 5s;"
echo "events { worker_connections 4096; }"
echo "http {"
echo "  client_body_temp_path $state/client_body;"
echo "  proxy_temp_path $state/proxy;"
echo "  fastcgi_temp_path $state/fastcgi;"
echo "  uwsgi_temp_path $state/uwsgi;"
echo "  scgi_temp_path $state/scgi;"
echo "  log_format voicechat '\$remote_addr \"\$request\" \$status replica=\$voicechat_replica upstream=\$upstream_addr cookie=\$cookie_voicechat_replica';"
echo "  access_log $state/access.log voicechat;"
echo "  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }"
echo ""
echo "  # New browsers: round robin over every replica."
echo "  upstream voicechat_any {"
for addr in "$@"; do echo "    server $addr max_fails=1 fail_timeout=10s;"; done
echo "  }"
i=0
for addr in "$@"; do
  i=$((i + 1))
  echo "  upstream voicechat_r$i {  # a browser with voicechat_replica=r$i; the others only if it is down"
  echo "    server $addr max_fails=1 fail_timeout=10s;"
  for other in "$@"; do [ "$other" = "$addr" ] || echo "    server $other backup;"; done
  echo "  }"
done
echo "  map \$cookie_voicechat_replica \$voicechat_upstream {"
echo "    default voicechat_any;"
i=0
for addr in "$@"; do i=$((i + 1)); echo "    r$i voicechat_r$i;"; done
echo "  }"
echo "  # The replica that answered (the last address nginx tried) names the cookie."
echo "  map \$upstream_addr \$voicechat_replica {"
echo "    default \"\";"
i=0
for addr in "$@"; do
  i=$((i + 1))
  echo "    \"~(^|[ ,])$(echo "$addr" | sed 's/[.]/\\./g')\$\" r$i;"
done
echo "  }"
echo ""
echo "  server {"
echo "    listen $listen;"
echo "    location / {"
echo "      proxy_pass http://\$voicechat_upstream;"
echo "      proxy_http_version 1.1;"
echo "      proxy_set_header Upgrade \$http_upgrade;"
echo "      proxy_set_header Connection \$connection_upgrade;"
echo "      proxy_set_header Host \$host;"
echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
echo "      proxy_set_header X-Forwarded-Proto \$scheme;"
echo "      proxy_read_timeout 3600s;"
echo "      proxy_send_timeout 3600s;"
echo "      proxy_buffering off;"
echo "      add_header Set-Cookie \"voicechat_replica=\$voicechat_replica; Path=/; HttpOnly; SameSite=Lax\" always;"
echo "    }"
echo "  }"
echo "}"
