// Parse and analyze one KQL query with Microsoft's Kusto language service, against one input
// table: `node check-kql.js QUERY TABLE "(col:type, ...)"`. Prints each diagnostic, then the
// result's columns as `column NAME:TYPE`; exits 1 if there was any diagnostic.
require('@kusto/language-service-next/bridge.min.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.min.js');
const L = Kusto.Language, S = Kusto.Language.Symbols;
const [query, tableName, schema] = process.argv.slice(2);
const table = S.TableSymbol.From(schema).WithName(tableName);
const db = new S.DatabaseSymbol.$ctor3('db', null, [table], false);
const globals = L.GlobalState.Default.WithCluster(new S.ClusterSymbol.$ctor1('cluster', [db])).WithDatabase(db);
const code = L.KustoCode.ParseAndAnalyze(query, globals);
const diagnostics = code.GetDiagnostics();
for (let i = 0; i < diagnostics.Count; i++) {
  const d = diagnostics.getItem(i);
  console.log(`${d.Severity}: ${d.Message} (at ${d.Start})`);
}
const result = code.ResultType;
if (result && result.Columns) {
  for (let i = 0; i < result.Columns.Count; i++) {
    const c = result.Columns.getItem(i);
    console.log(`column ${c.Name}:${c.Type.Name}`);
  }
}
process.exit(diagnostics.Count ? 1 : 0);
