/**
 * Schema migrations, in order. Each migration is written once against Kysely's schema builder so
 * it runs unchanged on SQLite and PostgreSQL. Never edit a released migration: add a new one.
 */
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export type SqlDialect = 'sqlite' | 'postgres';

/** An auto-incrementing integer primary key in the dialect's own idiom. */
function withId<T extends string>(t: CreateTableBuilder<T, never>, dialect: SqlDialect): CreateTableBuilder<T, 'id'> {
  return dialect === 'postgres'
    ? t.addColumn('id', 'serial', (c: ColumnDefinitionBuilder) => c.primaryKey())
    : t.addColumn('id', 'integer', (c: ColumnDefinitionBuilder) => c.primaryKey().autoIncrement());
}

function buildMigrations(dialect: SqlDialect): Record<string, Migration> {
  return {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await withId(db.schema.createTable('nodes'), dialect)
        .addColumn('uuid', 'varchar(36)', (c) => c.notNull().unique())
        .addColumn('name', 'varchar(255)', (c) => c.unique())
        .addColumn('driver', 'varchar(255)', (c) => c.notNull())
        .addColumn('driver_info', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('properties', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('instance_info', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('driver_internal_info', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('extra', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('instance_uuid', 'varchar(36)')
        .addColumn('resource_class', 'varchar(80)')
        .addColumn('provision_state', 'varchar(32)', (c) => c.notNull())
        .addColumn('target_provision_state', 'varchar(32)')
        .addColumn('power_state', 'varchar(32)')
        .addColumn('target_power_state', 'varchar(32)')
        .addColumn('maintenance', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('maintenance_reason', 'text')
        .addColumn('fault', 'varchar(255)')
        .addColumn('last_error', 'text')
        .addColumn('reservation', 'varchar(255)')
        .addColumn('conductor_group', 'varchar(255)', (c) => c.notNull().defaultTo(''))
        .addColumn('health', 'varchar(16)')
        .addColumn('agent_token_hash', 'varchar(128)')
        .addColumn('agent_boot_id', 'varchar(64)')
        .addColumn('agent_last_seen', 'varchar(32)')
        .addColumn('provision_updated_at', 'varchar(32)')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)')
        .execute();
      await db.schema.createIndex('nodes_reservation_idx').on('nodes').column('reservation').execute();
      await db.schema.createIndex('nodes_provision_state_idx').on('nodes').column('provision_state').execute();

      await withId(db.schema.createTable('ports'), dialect)
        .addColumn('uuid', 'varchar(36)', (c) => c.notNull().unique())
        .addColumn('address', 'varchar(18)', (c) => c.notNull().unique())
        .addColumn('node_id', 'integer', (c) => c.notNull().references('nodes.id').onDelete('cascade'))
        .addColumn('extra', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('pxe_enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('local_link_connection', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('physical_network', 'varchar(64)')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)')
        .execute();
      await db.schema.createIndex('ports_node_id_idx').on('ports').column('node_id').execute();

      await withId(db.schema.createTable('node_history'), dialect)
        .addColumn('uuid', 'varchar(36)', (c) => c.notNull().unique())
        .addColumn('node_id', 'integer', (c) => c.notNull().references('nodes.id').onDelete('cascade'))
        .addColumn('conductor', 'varchar(255)')
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('event_type', 'varchar(64)', (c) => c.notNull())
        .addColumn('severity', 'varchar(16)', (c) => c.notNull())
        .addColumn('user', 'varchar(64)')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('node_history_node_id_idx').on('node_history').columns(['node_id', 'id']).execute();

      await db.schema
        .createTable('node_inventory')
        .addColumn('node_id', 'integer', (c) => c.primaryKey().references('nodes.id').onDelete('cascade'))
        .addColumn('inventory', 'text', (c) => c.notNull())
        .addColumn('plugin_data', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)')
        .execute();

      await db.schema
        .createTable('agent_commands')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('node_id', 'integer', (c) => c.notNull().references('nodes.id').onDelete('cascade'))
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('progress', 'text')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)')
        .execute();
      await db.schema.createIndex('agent_commands_node_idx').on('agent_commands').columns(['node_id', 'created_at']).execute();
    },
  },
  '0002_bmc_sessions': {
    async up(db: Kysely<any>) {
      // One row per live Redfish session this conductor holds, so a restart reuses or deletes it.
      await db.schema
        .createTable('bmc_sessions')
        .addColumn('bmc_key', 'varchar(512)', (c) => c.primaryKey())
        .addColumn('session_uri', 'varchar(1024)', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('conductor', 'varchar(255)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();
    },
  },
  '0003_deferred_actions': {
    async up(db: Kysely<any>) {
      // Anything that waits (power transitions, the agent calling back, pause timers, fast-track
      // leases) is a row here with a due time, run by the scheduler; a restart resumes them.
      await db.schema
        .createTable('deferred_actions')
        .addColumn('uuid', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('node_id', 'integer', (c) => c.notNull().references('nodes.id').onDelete('cascade'))
        .addColumn('state', 'varchar(16)', (c) => c.notNull())
        .addColumn('call', 'varchar(64)', (c) => c.notNull())
        .addColumn('arguments', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('start_after', 'varchar(32)', (c) => c.notNull())
        .addColumn('retry_remaining', 'integer', (c) => c.notNull().defaultTo(3))
        .addColumn('conductor', 'varchar(255)')
        .addColumn('created_by', 'varchar(255)')
        .addColumn('result', 'text')
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)')
        .execute();
      await db.schema.createIndex('deferred_actions_due').on('deferred_actions').columns(['state', 'start_after']).execute();
      await db.schema.createIndex('deferred_actions_node').on('deferred_actions').column('node_id').execute();
    },
  },
    '0004_conductors': {
      async up(db: Kysely<any>) {
        // Membership of the conductors sharing this database: a heartbeat (milliseconds on the
        // database's clock, so hosts' clocks never matter), addresses for forwarding, and the
        // protocol a conductor speaks (a ring refuses members that speak another).
        await db.schema
          .createTable('conductors')
          .addColumn('hostname', 'varchar(255)', (c) => c.primaryKey())
          .addColumn('conductor_group', 'varchar(255)', (c) => c.notNull().defaultTo(''))
          .addColumn('api_url', 'varchar(512)')
          .addColumn('agent_address', 'varchar(512)')
          .addColumn('version', 'varchar(32)', (c) => c.notNull())
          .addColumn('protocol', 'integer', (c) => c.notNull())
          .addColumn('instance', 'varchar(64)', (c) => c.notNull())
          .addColumn('pid', 'integer', (c) => c.notNull())
          .addColumn('started_at', 'varchar(32)', (c) => c.notNull())
          .addColumn('heartbeat_ms', dialect === 'postgres' ? 'double precision' : 'real', (c) => c.notNull())
          .addColumn('state', 'varchar(16)', (c) => c.notNull())
          .execute();
      },
    },
    '0005_node_row_version': {
      async up(db: Kysely<any>) {
        // A counter the database bumps on every write to a node row, whoever writes it (any
        // conductor, any statement — reservations and agent liveness do not touch updated_at), so
        // the periodic sweeps list (id, row_version) and read whole rows only for nodes that changed.
        await db.schema.alterTable('nodes').addColumn('row_version', 'integer', (c) => c.notNull().defaultTo(0)).execute();
        if (dialect === 'postgres') {
          await sql`CREATE FUNCTION nodes_bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.row_version := OLD.row_version + 1; RETURN NEW; END $$`.execute(db);
          await sql`CREATE TRIGGER nodes_row_version BEFORE UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION nodes_bump_row_version()`.execute(db);
        } else {
          // SQLite triggers cannot assign NEW: a second write of the same (already dirty) page.
          // The WHEN guard keeps it from firing on its own update should recursive triggers be on.
          await sql`CREATE TRIGGER nodes_row_version AFTER UPDATE ON nodes FOR EACH ROW WHEN NEW.row_version = OLD.row_version
            BEGIN UPDATE nodes SET row_version = OLD.row_version + 1 WHERE id = NEW.id; END`.execute(db);
        }
      },
    },
  };
}

export function migrationProvider(dialect: SqlDialect): MigrationProvider {
  return {
    async getMigrations() {
      return buildMigrations(dialect);
    },
  };
}
