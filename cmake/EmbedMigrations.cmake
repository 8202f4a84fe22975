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
set(METRIX_MIGRATIONS_CC ${CMAKE_BINARY_DIR}/generated/migrations_embedded.cc)
add_custom_command(
  OUTPUT ${METRIX_MIGRATIONS_CC}
  COMMAND ${CMAKE_COMMAND} -DOUTPUT=${METRIX_MIGRATIONS_CC} "-DINPUTS=${METRIX_MIGRATIONS}"
          -P ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  DEPENDS ${METRIX_MIGRATIONS} ${CMAKE_SOURCE_DIR}/cmake/embed_migrations_script.cmake
  COMMENT "Embedding SQL migrations"
  VERBATIM)
