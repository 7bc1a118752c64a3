/** Enabled hardware types, by name. New hardware types register here. */
import { DriverError } from '../../shared/errors.js';
import type { HardwareType } from './base.js';
import { fakeHardware } from './fake-hardware.js';

export class DriverRegistry {
  private readonly types = new Map<string, HardwareType>();

  constructor(types: HardwareType[] = [fakeHardware()]) {
    for (const t of types) this.types.set(t.name, t);
  }

  register(t: HardwareType): void {
    this.types.set(t.name, t);
  }

  has(name: string): boolean {
    return this.types.has(name);
  }

  get(name: string): HardwareType {
    const t = this.types.get(name);
    if (!t) throw new DriverError(`driver: "${name}" is not enabled; enabled drivers: ${this.names().join(', ')}`, { field: 'driver' });
    return t;
  }

  names(): string[] {
    return [...this.types.keys()];
  }
}
