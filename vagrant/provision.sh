#!/usr/bin/env bash
# Provision a Debian 12 box: FreeSWITCH from the vendor's packages, mod_audio_fork built from
# source, freeswitch_conf/ installed, esl-controller from this checkout as a systemd service,
# and a SIP softphone account. Idempotent: run it again after changing the checkout.
#
# Environment:
#   SIGNALWIRE_TOKEN    SignalWire personal access token for the FreeSWITCH package repository
#                       (required the first time; written only to a root-only apt auth file)
#   ESL_SRC             path of this checkout inside the box (default /vagrant_src)
#   ESL_BOX_IP          address the softphone registers to (shown at the end)
#   MOD_AUDIO_FORK_REF  branch, tag or commit of drachtio-freeswitch-modules (default main)
set -euo pipefail

ESL_SRC="${ESL_SRC:-/vagrant_src}"
ESL_BOX_IP="${ESL_BOX_IP:-127.0.0.1}"
MOD_AUDIO_FORK_REF="${MOD_AUDIO_FORK_REF:-main}"
FS_REPO_HOST="freeswitch.signalwire.com"
FS_REPO_URL="https://${FS_REPO_HOST}/repo/deb/debian-release"
FS_KEYRING="/usr/share/keyrings/signalwire-freeswitch-repo.gpg"
APT_AUTH="/etc/apt/auth.conf.d/freeswitch.conf"
FS_CONF="/etc/freeswitch"
APP_DIR="/opt/esl-controller"
ETC_DIR="/etc/esl-controller"
DATA_DIR="/var/lib/esl-controller"
SMOKE_DIR="/usr/share/esl-controller/smoke"
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
[ -d "${ESL_SRC}/freeswitch_conf" ] || die "no checkout at ${ESL_SRC} (set ESL_SRC)"

install_base() {
  log "base packages"
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    ca-certificates curl gnupg2 lsb-release git build-essential pkg-config \
    libwebsockets-dev libssl-dev zlib1g-dev \
    python3 python3-venv python3-dev libpcap0.8 tshark espeak-ng sox openssl
}

configure_fs_repo() {
  if [ ! -s "${APT_AUTH}" ]; then
    [ -n "${SIGNALWIRE_TOKEN:-}" ] || die "SIGNALWIRE_TOKEN is not set: export your SignalWire personal access token before 'vagrant up'"
    log "FreeSWITCH package repository credentials (root-only file)"
    install -d -m 0755 /etc/apt/auth.conf.d
    umask 077
    # netrc format, read by apt and by curl --netrc-file: the token never appears on a command line
    printf 'machine %s login signalwire password %s\n' "${FS_REPO_HOST}" "${SIGNALWIRE_TOKEN}" >"${APT_AUTH}"
    umask 022
    chmod 0600 "${APT_AUTH}"
  fi
  if [ ! -s "${FS_KEYRING}" ]; then
    log "FreeSWITCH repository signing key"
    curl -fsSL --netrc-file "${APT_AUTH}" -o "${FS_KEYRING}" "${FS_REPO_URL}/signalwire-freeswitch-repo.gpg"
  fi
  local codename
  codename="$(lsb_release -sc)"
  printf 'deb [signed-by=%s] %s/ %s main\n' "${FS_KEYRING}" "${FS_REPO_URL}" "${codename}" \
    >/etc/apt/sources.list.d/freeswitch.list
}

install_freeswitch() {
  log "FreeSWITCH packages"
  apt-get update -q
  apt-get install -y -q freeswitch-meta-all libfreeswitch-dev
  if [ ! -e "${FS_CONF}/freeswitch.xml" ]; then
    cp -a /usr/share/freeswitch/conf/vanilla/. "${FS_CONF}/"
  fi
}

build_mod_audio_fork() {
  local moddir src build
  moddir="$(pkg-config --variable=modulesdir freeswitch)"
  [ -n "${moddir}" ] || die "pkg-config does not know freeswitch (libfreeswitch-dev missing?)"
  if [ -e "${moddir}/mod_audio_fork.so" ] && [ -z "${REBUILD_MOD_AUDIO_FORK:-}" ]; then
    log "mod_audio_fork already installed in ${moddir}"
    return
  fi
  log "building mod_audio_fork (${MOD_AUDIO_FORK_REF})"
  src="/usr/local/src/drachtio-freeswitch-modules"
  if [ ! -d "${src}/.git" ]; then
    git clone -q https://github.com/drachtio/drachtio-freeswitch-modules.git "${src}"
  fi
  git -C "${src}" fetch -q origin "${MOD_AUDIO_FORK_REF}"
  git -C "${src}" checkout -q FETCH_HEAD
  build="$(mktemp -d)"
  local cflags libs f
  read -r -a cflags <<<"$(pkg-config --cflags freeswitch libwebsockets)"
  read -r -a libs <<<"$(pkg-config --libs freeswitch libwebsockets)"
  for f in "${src}"/modules/mod_audio_fork/*.c; do
    gcc -c -fPIC -O2 "${cflags[@]}" -o "${build}/$(basename "${f}").o" "${f}"
  done
  for f in "${src}"/modules/mod_audio_fork/*.cpp; do
    g++ -c -fPIC -O2 -std=c++11 "${cflags[@]}" -o "${build}/$(basename "${f}").o" "${f}"
  done
  g++ -shared -o "${build}/mod_audio_fork.so" "${build}"/*.o "${libs[@]}"
  install -m 0644 "${build}/mod_audio_fork.so" "${moddir}/mod_audio_fork.so"
  rm -rf "${build}"
}

# set_var NAME VALUE: rewrite one pre-processor variable in the installed vars file
set_var() {
  local file="${FS_CONF}/vars_esl_controller.xml"
  sed -i "s|data=\"$1=[^\"]*\"|data=\"$1=$2\"|" "${file}"
  grep -q "data=\"$1=$2\"" "${file}" || die "could not set $1"
}

# secret NAME: a random value kept in ${ETC_DIR}/NAME (mode 0600), stable across runs
secret() {
  local path="${ETC_DIR}/$1"
  if [ ! -s "${path}" ]; then
    (umask 077 && openssl rand -hex 16 >"${path}")
  fi
  cat "${path}"
}

install_fs_conf() {
  log "installing freeswitch_conf/"
  install -d -m 0750 "${ETC_DIR}"
  local conf="${ESL_SRC}/freeswitch_conf"
  install -m 0640 "${conf}/vars_esl_controller.xml" "${FS_CONF}/vars_esl_controller.xml"
  install -m 0640 "${conf}"/autoload_configs/*.xml "${FS_CONF}/autoload_configs/"
  install -d "${FS_CONF}/dialplan/public" "${FS_CONF}/directory/default"
  install -m 0640 "${conf}/dialplan/public/00_esl_controller.xml" "${FS_CONF}/dialplan/public/"
  install -m 0640 "${conf}/dialplan/esl_transfer.xml" "${FS_CONF}/dialplan/"
  install -m 0640 "${conf}/directory/default/esl_controller_softphone.xml" "${FS_CONF}/directory/default/"
  if ! grep -q 'vars_esl_controller.xml' "${FS_CONF}/vars.xml"; then
    sed -i '0,/<include>/s||<include>\n  <X-PRE-PROCESS cmd="include" data="vars_esl_controller.xml"/>|' "${FS_CONF}/vars.xml"
  fi
  set_var esl_controller_esl_password "$(secret esl-password)"
  set_var esl_controller_softphone_password "$(secret softphone-password)"
  set_var esl_controller_acl_cidr "127.0.0.1/32"
  set_var esl_controller_host "127.0.0.1"
  set_var esl_controller_port "8084"
  chown -R freeswitch:freeswitch "${FS_CONF}"
  # fs_cli (root) reads the ESL password from here
  (umask 077 && printf '[default]\npassword => %s\n' "$(secret esl-password)" >/root/.fs_cli_conf)
}

install_controller() {
  log "esl-controller from ${ESL_SRC}"
  id esl-controller >/dev/null 2>&1 ||
    useradd --system --home-dir "${DATA_DIR}" --shell /usr/sbin/nologin esl-controller
  install -d -o esl-controller -g esl-controller -m 0750 "${DATA_DIR}"
  install -d "${APP_DIR}"
  [ -x "${APP_DIR}/venv/bin/pip" ] || python3 -m venv "${APP_DIR}/venv"
  "${APP_DIR}/venv/bin/pip" install -q --upgrade pip
  "${APP_DIR}/venv/bin/pip" install -q "${ESL_SRC}[pcap]"
  cat >"${ETC_DIR}/config.yaml" <<YAML
data_dir: ${DATA_DIR}
http:
  host: 0.0.0.0
  port: 8080
freeswitch:
  enabled: true
  host: 127.0.0.1
  port: 8021
  outbound_host: 127.0.0.1
  outbound_port: 8084
  fork_host: 127.0.0.1
  fork_port: 8085
YAML
  (umask 077 && printf 'ESL_CONTROLLER_FREESWITCH__PASSWORD=%s\n' "$(secret esl-password)" >"${ETC_DIR}/env")
  chgrp esl-controller "${ETC_DIR}" "${ETC_DIR}/config.yaml" "${ETC_DIR}/env"
  chmod 0640 "${ETC_DIR}/config.yaml" "${ETC_DIR}/env"
  install -m 0644 "${ESL_SRC}/vagrant/esl-controller.service" /etc/systemd/system/esl-controller.service
  if [ ! -s "${ETC_DIR}/api-key" ]; then
    log "creating an API key for the smoke test"
    runuser -u esl-controller -- env ESL_CONTROLLER_CONFIG="${ETC_DIR}/config.yaml" \
      "${APP_DIR}/venv/bin/esl-controller" migrate
    local key
    key="$(runuser -u esl-controller -- env ESL_CONTROLLER_CONFIG="${ETC_DIR}/config.yaml" \
      "${APP_DIR}/venv/bin/esl-controller" keys create --name vagrant | tail -n 1)"
    (umask 077 && printf '%s\n' "${key}" >"${ETC_DIR}/api-key")
  fi
}

make_smoke_audio() {
  log "smoke-test caller speech"
  install -d "${SMOKE_DIR}"
  espeak-ng -v en-us -s 150 -w "${SMOKE_DIR}/caller-22k.wav" \
    "Hello, I would like to know your opening hours tomorrow, please."
  sox -q "${SMOKE_DIR}/caller-22k.wav" -r 8000 -c 1 -b 16 "${SMOKE_DIR}/caller.wav"
  rm -f "${SMOKE_DIR}/caller-22k.wav"
  install -m 0755 "${ESL_SRC}/vagrant/smoke.sh" /usr/local/bin/esl-smoke
}

start_services() {
  log "starting FreeSWITCH and esl-controller"
  systemctl daemon-reload
  systemctl enable --now freeswitch
  systemctl restart freeswitch
  systemctl enable --now esl-controller
  systemctl restart esl-controller
}

install_base
configure_fs_repo
install_freeswitch
build_mod_audio_fork
install_fs_conf
install_controller
make_smoke_audio
start_services

cat <<EOF

esl-controller box ready.
  API:        http://${ESL_BOX_IP}:8080 (key in ${ETC_DIR}/api-key)
  Softphone:  user esl-softphone, domain ${ESL_BOX_IP}, port 5060 (UDP),
              password in ${ETC_DIR}/softphone-password; dial 15557654321
  Smoke test: sudo esl-smoke
EOF
