# Embeds migrations/NNNN_name.sql into a generated C++ source, so the binaries never
# read the source tree at run time. Each migration carries its SHA-256, which the
# database records when the migration is applied and checks on every open.
set(METRIX_MIGRATIONS
  ${CMAKE_SOURCE_DIR}/migrations/0001_outbox.sql
  ${CMAKE_SOURCE_DIR}/migrations/0002_heartbeat_and_audit_views.sql
  ${CMAKE_SOURCE_DIR}/migrations/0003_validation_trigger.sql
  ${CMAKE_SOURCE_DIR}/migrations/0004_heartbeat_window.sql
  ${CMAKE_SOURCE_DIR}/migrations/0005_lease_expiries.sql
)
# PostgreSQL's own, in storage/postgres/migrations/ (storage/postgres/migrate.h).
set(METRIX_PG_MIGRATIONS
  ${CMAKE_SOURCE_DIR}/storage/postgres/migrations/0001_outbox.sql
  ${CMAKE_SOURCE_DIR}/storage/postgres/migrations/0002_validation.sql
  ${CMAKE_SOURCE_DIR}/storage/postgres/migrations/0003_audit_revenue.sql
  ${CMAKE_SOURCE_DIR}/storage/postgres/migrations/0004_validation_speed.sql
)
set(METRIX_MIGRATIONS_CC ${CMAKE_BINARY_DIR}/generated/migrations_embedded.cc)
set(METRIX_PG_MIGRATIONS_CC ${CMAKE_BINARY_DIR}/generated/pg_migrations_embedded.cc)
add_custom_command(
  OUTPUT ${METRIX_MIGRATIONS_CC}
  COMMAND ${CMAKE_COMMAND} -DOUTPUT=${METRIX_MIGRATIONS_CC} "-DINPUTS=${METRIX_MIGRATIONS}"
          -DFUNCTION=embedded_migrations -DINCLUDE=storage/migrate.h -P ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  DEPENDS ${METRIX_MIGRATIONS} ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  COMMENT "Embedding SQL migrations"
  VERBATIM)
add_custom_command(
  OUTPUT ${METRIX_PG_MIGRATIONS_CC}
  COMMAND ${CMAKE_COMMAND} -DOUTPUT=${METRIX_PG_MIGRATIONS_CC} "-DINPUTS=${METRIX_PG_MIGRATIONS}"
          -DFUNCTION=embedded_pg_migrations -DINCLUDE=storage/postgres/migrate.h -P ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  DEPENDS ${METRIX_PG_MIGRATIONS} ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  COMMENT "Embedding PostgreSQL migrations"
  VERBATIM)
