/**
 * One forwarded guest connection (qemu guestfwd `cmd:`): stdin/stdout are the guest's TCP stream,
 * relayed to host:port on the host's loopback. Usage: node qemu-relay.js 127.0.0.1 PORT
 */
import net from 'node:net';

const [host, port] = process.argv.slice(2);
if (!host || !port || !/^127\./.test(host)) {
  process.stderr.write('usage: qemu-relay 127.x.y.z PORT (loopback only)\n');
  process.exit(2);
}
const sock = net.connect(Number(port), host);
process.stdin.pipe(sock);
sock.pipe(process.stdout);
const end = () => process.exit(0);
sock.on('error', end);
sock.on('close', end);
process.stdin.on('end', () => sock.end());
