#!/usr/bin/env bash
# System packages the test suite drives for real: GStreamer's RTSP server (a real camera),
# Chromium (a real browser), Xvfb/xdotool/xwininfo (a real window), ffmpeg (a real MJPEG client),
# iproute2 (network namespaces as hosts), opencv-doc (OpenCV's sample pictures: a real face for
# the face detection test), podman with runc, CNI plugins (dnsname: containers reach each other by
# name) and debootstrap (a base image without a registry: the image tests). Installs only what
# is missing; needs root for that.
set -euo pipefail
packages=(
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly gstreamer1.0-x gstreamer1.0-tools
    chromium xvfb xdotool x11-utils libglib2.0-0 libgl1 ffmpeg iproute2 nftables systemd opencv-doc
    podman runc containernetworking-plugins golang-github-containernetworking-plugin-dnsname iptables debootstrap
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages (run as root, or install them): ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
