#!/bin/busybox sh
# /init of the ironfleet deploy ramdisk: mount the kernel filesystems, load the modules the agent
# needs (virtio, md/raid), bring up the first NIC (DHCP, or ironfleet.ip=ADDR/PREFIX and
# ironfleet.gw=GW from the kernel command line), then run the agent, which reads
# ironfleet.conductor=HOST:PORT (and ironfleet.ca=, ironfleet.firmware_config=) from /proc/cmdline.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /run /tmp /var/log
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs tmp /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
echo "ironfleet-ramdisk: $(cat /etc/ironfleet/release) on $(uname -r)"

while read -r mod; do
  insmod "/lib/modules/$mod" 2>/dev/null || echo "ironfleet-ramdisk: module $mod not loaded"
done < /etc/ironfleet/modules.load

IP=""; GW=""
for tok in $(cat /proc/cmdline); do
  case "$tok" in
    ironfleet.ip=*) IP="${tok#*=}" ;;
    ironfleet.gw=*) GW="${tok#*=}" ;;
  esac
done

ip link set lo up
IFACE=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for n in /sys/class/net/*; do
    n="${n##*/}"
    [ "$n" = lo ] && continue
    IFACE="$n"; break
  done
  [ -n "$IFACE" ] && break
  sleep 0.5
done
if [ -z "$IFACE" ]; then
  echo "ironfleet-ramdisk: no network interface found"
else
  ip link set "$IFACE" up
  if [ -n "$IP" ]; then
    ip addr add "$IP" dev "$IFACE"
    [ -n "$GW" ] && ip route add default via "$GW"
  else
    udhcpc -i "$IFACE" -q -n -t 20 -T 1 -s /etc/ironfleet/udhcpc.script || echo "ironfleet-ramdisk: DHCP on $IFACE failed"
  fi
  echo "ironfleet-ramdisk: $IFACE $(ip -4 -o addr show dev "$IFACE" | awk '{print $4}')"
fi

# The agent runs until the conductor powers the machine off; if it exits, it is restarted.
while :; do
  /usr/bin/node /opt/ironfleet/agent.cjs
  echo "ironfleet-ramdisk: agent exited with $?; restarting in 2 s"
  sleep 2
done
