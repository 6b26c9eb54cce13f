// The driver workload through JDBC (Debian's libpostgresql-jdbc-java; tests/drivers/README.md).
// Compiled with javac at test time into a temporary folder:
//   java -cp DIR:/usr/share/java/postgresql.jar JdbcWorkload --port N --password P --path default|threshold1
//
// --path default     prepareThreshold left at its default (5): the unnamed statement until a
//                    PreparedStatement's fifth execution, then a named one
// --path threshold1  prepareThreshold=1: named prepared statements from the first execution
//
// Every call has a time limit: connectTimeout, loginTimeout and socketTimeout (a read that waits
// longer fails). The batch is addBatch/executeBatch (one Sync for the whole batch); the read-then-write
// is one PreparedStatement holding two statements, which pgjdbc sends as two Parse/Bind/Execute
// before one Sync.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class JdbcWorkload {
    static final int STEP_TIMEOUT_S = 3; // one driver call (a query here takes milliseconds)
    static String label = "connect";

    static final String PLAIN = "SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id";
    static final String REF = "SELECT code, label FROM drv_ref WHERE code = ?";
    static final String PARAM = "SELECT name, qty FROM drv_items WHERE id = ?";
    static final String RANGE = "SELECT id FROM drv_items WHERE qty > ? ORDER BY id";
    static final String FETCHVAL = "SELECT ?::int + 1";
    static final String INSERT = "INSERT INTO drv_items (id, name, qty) VALUES (?, ?, ?)";
    static final String QTY = "SELECT qty FROM drv_items WHERE id = ?";
    static final String BUMP = "UPDATE drv_items SET qty = qty + ? WHERE id = ?";
    static final String BUMP_RETURNING = "UPDATE drv_items SET qty = qty + ? WHERE id = ? RETURNING qty";
    static final String LOG_INSERT = "INSERT INTO drv_log (id, note) VALUES (?, ?)";
    static final String LOG_READ = "SELECT id, note FROM drv_log ORDER BY id";

    static Connection conn;
    static final Map<String, PreparedStatement> statements = new HashMap<>();

    static String json(Object v) {
        if (v == null) return "null";
        if (v instanceof Number) return v.toString();
        StringBuilder b = new StringBuilder("\"");
        for (char c : v.toString().toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String rows(ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                int t = md.getColumnType(i);
                row.add(json(t == Types.INTEGER ? (Object) rs.getObject(i, Integer.class) : rs.getString(i)));
            }
            out.add("[" + String.join(", ", row) + "]");
        }
        rs.close();
        return "[" + String.join(", ", out) + "]";
    }

    static void emit(String name, String rows) {
        System.out.println(name + "\t" + rows);
        System.out.flush();
    }

    // One PreparedStatement per text, reused as an application's statement cache would.
    static PreparedStatement ps(String sql, Object... params) throws SQLException {
        PreparedStatement p = statements.get(sql);
        if (p == null) {
            p = conn.prepareStatement(sql);
            p.setQueryTimeout(STEP_TIMEOUT_S);
            statements.put(sql, p);
        }
        for (int i = 0; i < params.length; i++) p.setObject(i + 1, params[i]);
        return p;
    }

    static String query(String sql, Object... params) throws SQLException {
        return rows(ps(sql, params).executeQuery());
    }

    static void update(String sql, Object... params) throws SQLException {
        ps(sql, params).executeUpdate();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = new HashMap<>();
        a.put("host", "127.0.0.1");
        a.put("user", "app");
        a.put("dbname", "appdb");
        for (int i = 0; i + 1 < argv.length; i += 2) a.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        String path = a.get("path");
        if (!"default".equals(path) && !"threshold1".equals(path)) {
            System.err.println("usage: --port N --password P --path default|threshold1");
            System.exit(2);
        }
        Properties p = new Properties();
        p.setProperty("user", a.get("user"));
        p.setProperty("password", a.get("password"));
        p.setProperty("sslmode", "disable");
        p.setProperty("connectTimeout", String.valueOf(STEP_TIMEOUT_S));
        p.setProperty("loginTimeout", String.valueOf(STEP_TIMEOUT_S));
        p.setProperty("socketTimeout", String.valueOf(STEP_TIMEOUT_S));
        if ("threshold1".equals(path)) p.setProperty("prepareThreshold", "1");
        String url = "jdbc:postgresql://" + a.get("host") + ":" + a.get("port") + "/" + a.get("dbname");
        try {
            conn = DriverManager.getConnection(url, p);
            conn.setAutoCommit(true);

            label = "plain";
            try (Statement s = conn.createStatement()) {
                s.setQueryTimeout(STEP_TIMEOUT_S);
                emit("plain", rows(s.executeQuery(PLAIN)));
                label = "plain_again";
                emit("plain_again", rows(s.executeQuery(PLAIN)));
            }
            for (String name : new String[] {"ref", "ref_2", "ref_3"}) {
                label = name;
                emit(name, query(REF, 2));
            }
            label = "param";
            emit("param", query(PARAM, 3));
            label = "range";
            emit("range", query(RANGE, 25));
            label = "fetchval";
            emit("fetchval", query(FETCHVAL, 41));

            label = "pipe";
            PreparedStatement two = ps(QTY + "; " + BUMP_RETURNING, 4, 100, 4);
            if (!two.execute()) throw new SQLException("the read-then-write gave no result set");
            emit("pipe_read", rows(two.getResultSet()));
            if (!two.getMoreResults()) throw new SQLException("the read-then-write gave one result set, not two");
            emit("pipe_write", rows(two.getResultSet()));
            emit("pipe_after", query(QTY, 4));

            label = "ryw";
            update(INSERT, 101, "new", 7);
            emit("ryw", query(PARAM, 101));

            label = "stale";
            emit("stale_before", query(QTY, 2));
            emit("stale_before_2", query(QTY, 2));
            update(BUMP, 1, 2);
            emit("stale_after", query(QTY, 2));

            label = "tx";
            conn.setAutoCommit(false);
            update(BUMP, 5, 1);
            emit("tx_inside", query(QTY, 1));
            conn.commit();
            conn.setAutoCommit(true);
            emit("tx_after", query(QTY, 1));

            label = "batch";
            PreparedStatement b = ps(LOG_INSERT);
            for (Object[] row : new Object[][] {{1, "a"}, {2, "b"}, {3, "c"}}) {
                b.setObject(1, row[0]);
                b.setObject(2, row[1]);
                b.addBatch();
            }
            int[] counts = b.executeBatch();
            if (counts.length != 3) throw new SQLException("executeBatch returned " + counts.length + " counts");
            emit("batch_after", query(LOG_READ));

            label = "final";
            try (Statement s = conn.createStatement()) {
                s.setQueryTimeout(STEP_TIMEOUT_S);
                emit("final", rows(s.executeQuery(PLAIN)));
            }
            label = "close";
            conn.close();
        } catch (Exception e) {
            String msg = e.getMessage();
            Throwable c = e.getCause();
            if (c != null) msg += " (" + c.getClass().getSimpleName() + ": " + c.getMessage() + ")";
            System.err.println("FAILED in step " + label + ": " + e.getClass().getSimpleName() + ": " + msg);
            System.exit(1);
        }
    }
}
