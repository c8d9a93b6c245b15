// Processes and params of a Nextflow pipeline, read with the Groovy compiler (CONVERSION phase),
// printed as JSON; and the rendering of process scripts with sample values.
//
//   groovy nf_process.groovy describe FILE...   .nf: every process (directives, inputs, outputs,
//                                               script/stub source); .config: params, labels,
//                                               withName selectors, includeConfig targets,
//                                               profiles
//   groovy nf_process.groovy render SPEC.json   SPEC: [{file, process, params, task, inputs}],
//                                               inputs {name: value}, a path value {"path": NAME
//                                               or [NAMES]}, [] for an absent optional input;
//                                               prints [{process, script, stub, outputs}]
//
// Rendering evaluates the script: and stub: sections as Groovy, as Nextflow does: `def` lines,
// then the command string, with params/task/inputs bound (an unknown params key is an error).
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.ast.stmt.*
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases

/** A staged input file: renders as its name, like Nextflow's staged paths. */
class Staged {
    String name
    String toString() { name }
    String getBaseName() { name.contains('.') ? name.substring(0, name.lastIndexOf('.')) : name }
    String getSimpleName() { name.contains('.') ? name.substring(0, name.indexOf('.')) : name }
    String getExtension() { name.contains('.') ? name.substring(name.lastIndexOf('.') + 1) : '' }
}

/** Several staged files: blank-separated, as Nextflow renders a list of paths. */
class StagedList extends ArrayList {
    String toString() { join(' ') }
}

/** params: reading a key that the config does not declare is an error (a typo). */
class StrictParams extends LinkedHashMap {
    Object get(Object key) {
        if (!containsKey(key)) throw new IllegalArgumentException("params.${key} is not declared in the config")
        super.get(key)
    }
}

/** Unknown names evaluate to themselves (emit: names, qualifiers in output declarations). */
class NameBinding extends Binding {
    NameBinding(Map vars) { super(vars) }
    Object getVariable(String name) { variables.containsKey(name) ? super.getVariable(name) : name }
}

class Source {
    List<String> lines
    Source(File f) { lines = f.readLines() }
    String text(ASTNode n) {
        if (n.lineNumber < 1) return null
        def out = []
        for (int i = n.lineNumber; i <= n.lastLineNumber; i++) {
            def l = lines[i - 1]
            int from = (i == n.lineNumber) ? n.columnNumber - 1 : 0
            int to = (i == n.lastLineNumber) ? n.lastColumnNumber - 1 : l.length()
            out << l.substring(Math.min(from, l.length()), Math.min(to, l.length()))
        }
        out.join('\n')
    }
}

def parse(String path) {
    def unit = new CompilationUnit()
    unit.addSource(new File(path))
    try {
        unit.compile(Phases.CONVERSION)
    } catch (CompilationFailedException e) {
        System.err.println("${path}: ${e.message.readLines().findAll { it.trim() }.take(3).join(' ')}")
        System.exit(1)
    }
    unit.AST.modules[0]
}

List<Expression> argList(Expression args) {
    if (args instanceof ArgumentListExpression) return args.expressions
    if (args instanceof TupleExpression) return args.expressions
    [args]
}

/** Named arguments (emit:, optional:) of a declaration, as name -> source-ish text. */
Map named(MethodCallExpression call) {
    def out = [:]
    argList(call.arguments).each { a ->
        def entries = (a instanceof MapExpression) ? a.mapEntryExpressions : []
        entries.each { e -> out[e.keyExpression.text] = e.valueExpression.text }
    }
    out
}

/** val(x) / path(x) / tuple(...) items of an input or output declaration. */
List items(MethodCallExpression call, Source src) {
    def name = call.methodAsString
    if (name == 'tuple') {
        return argList(call.arguments).findAll { it instanceof MethodCallExpression }.collect { items(it, src) }.flatten()
    }
    def plain = argList(call.arguments).findAll { !(it instanceof MapExpression) }
    def first = plain ? plain[0] : null
    [[kind: name, name: (first instanceof VariableExpression) ? first.name : null,
      source: first != null ? src.text(first) : null] + named(call)]
}

Map describeProcess(String name, ClosureExpression body, Source src, String file, int line) {
    def proc = [name: name, file: file, line: line, directives: [], inputs: [], outputs: [],
                script: null, stub: null, sections: []]
    String section = 'directives'
    List<Statement> scriptStmts = [], stubStmts = []
    ((BlockStatement) body.code).statements.each { st ->
        def labels = st.statementLabels ?: []
        if (labels) { section = labels[-1]; proc.sections << section }
        def expr = (st instanceof ExpressionStatement) ? st.expression : null
        switch (section) {
            case 'directives':
                if (expr instanceof MethodCallExpression)
                    proc.directives << [name: expr.methodAsString, source: src.text(expr.arguments)]
                break
            case 'input':
                if (expr instanceof MethodCallExpression) proc.inputs << [qualifier: expr.methodAsString, items: items(expr, src)]
                break
            case 'output':
                if (expr instanceof MethodCallExpression)
                    proc.outputs << [qualifier: expr.methodAsString, items: items(expr, src), source: src.text(st)] + named(expr)
                break
            case 'script': case 'shell': case 'exec':
                scriptStmts << st; break
            case 'stub':
                stubStmts << st; break
        }
    }
    proc.script = scriptStmts ? scriptStmts.collect { src.text(it) }.join('\n') : null
    proc.stub = stubStmts ? stubStmts.collect { src.text(it) }.join('\n') : null
    proc
}

List describeNf(String path) {
    def module = parse(path)
    def src = new Source(new File(path))
    def out = []
    module.statementBlock.statements.each { st ->
        if (!(st instanceof ExpressionStatement) || !(st.expression instanceof MethodCallExpression)) return
        MethodCallExpression call = st.expression
        if (call.methodAsString != 'process') return
        def inner = argList(call.arguments)[0]
        if (inner instanceof MethodCallExpression) {
            def body = argList(inner.arguments).find { it instanceof ClosureExpression }
            if (body) out << describeProcess(inner.methodAsString, body, src, path, st.lineNumber)
        }
    }
    out
}

/** Evaluate `name = expr` statements of a params block in order, each seeing the earlier ones. */
void readParams(BlockStatement block, Source src, Map params, Map docs, String projectDir) {
    block.statements.each { st ->
        def e = (st instanceof ExpressionStatement) ? st.expression : null
        if (e instanceof BinaryExpression && e.operation.text == '=') {
            def key = e.leftExpression.text.replaceFirst(/^params\./, '')
            def shell = new GroovyShell(new Binding([projectDir: projectDir, launchDir: '.', params: params]))
            def text = src.text(st)
            params[key] = shell.evaluate(text.substring(text.indexOf('=') + 1))
            def line = src.lines[st.lastLineNumber - 1]
            def m = line =~ '\\s//\\s*(.*)$'
            docs[key] = m.find() ? m.group(1).trim() : ''
        }
    }
}

Map describeConfig(String path, String projectDir) {
    def module = parse(path)
    def src = new Source(new File(path))
    def facts = [params: [:], docs: [:], labels: [], names: [], includes: [], profiles: []]
    def visitor = new org.codehaus.groovy.ast.CodeVisitorSupport() {
        void visitMethodCallExpression(MethodCallExpression call) {
            def args = argList(call.arguments)
            if (call.methodAsString == 'params' && args && args[0] instanceof ClosureExpression) {
                readParams((BlockStatement) args[0].code, src, facts.params, facts.docs, projectDir)
            } else if (call.methodAsString == 'profiles' && args && args[0] instanceof ClosureExpression) {
                ((BlockStatement) args[0].code).statements.each { p ->
                    if (p instanceof ExpressionStatement && p.expression instanceof MethodCallExpression)
                        facts.profiles << p.expression.methodAsString
                }
            } else if (call.methodAsString == 'includeConfig' && args) {
                facts.includes << args[0].text
            }
            super.visitMethodCallExpression(call)
        }
        void visitExpressionStatement(ExpressionStatement st) {
            def labels = st.statementLabels ?: []
            if (st.expression instanceof MethodCallExpression) {
                if ('withLabel' in labels) facts.labels << st.expression.methodAsString
                if ('withName' in labels) facts.names << st.expression.methodAsString
            }
            def e = st.expression
            if (e instanceof BinaryExpression && e.operation.text == '=' && e.leftExpression.text.startsWith('params.')) {
                readParams(new BlockStatement([st], null), src, facts.params, facts.docs, projectDir)
            }
            super.visitExpressionStatement(st)
        }
    }
    module.statementBlock.visit(visitor)
    facts
}

Object staged(Object v) {
    if (v instanceof Map && v.containsKey('path')) {
        def p = v.path
        if (p instanceof List) { def l = new StagedList(); p.each { l << new Staged(name: it) }; return l }
        return new Staged(name: p)
    }
    v
}

Map render(Map spec) {
    def procs = describeNf(spec.file).findAll { it.name == spec.process }
    if (!procs) throw new IllegalArgumentException("${spec.file}: no process ${spec.process}")
    def proc = procs[0]
    def params = new StrictParams(); params.putAll(spec.params)
    def vars = [params: params, task: spec.task ?: [:]]
    spec.inputs.each { k, v -> vars[k] = staged(v) }
    def result = [process: proc.name]
    ['script', 'stub'].each { section ->
        result[section] = proc[section] == null ? null
            : new GroovyShell(new Binding(new LinkedHashMap(vars))).evaluate(proc[section]).toString()
    }
    // outputs: evaluate each declaration with val/path/tuple as recorders
    result.outputs = proc.outputs.collect { out ->
        def found = []
        def rec = { String kind -> { Object[] a ->
            def opts = a && a[0] instanceof Map ? a[0] : [:]
            def rest = a && a[0] instanceof Map ? a.drop(1) : a.toList()
            if (kind in ['path', 'file']) found << [pattern: rest ? rest[0].toString() : null, optional: opts.optional ? true : false]
            [kind: kind, items: rest, opts: opts]
        } }
        def b = new NameBinding(new LinkedHashMap(vars) + [path: rec('path'), file: rec('file'), val: rec('val'),
                                                           env: rec('env'), stdout: rec('stdout'), tuple: rec('tuple'),
                                                           eval: rec('eval')])
        new GroovyShell(b).evaluate(out.source)
        [emit: out.emit, paths: found]
    }
    result
}

def mode = args ? args[0] : ''
if (mode == 'describe') {
    def projectDir = System.getenv('NF_PROJECT_DIR') ?: '.'
    def out = [processes: [], configs: [:]]
    args.drop(1).each { path ->
        if (path.endsWith('.nf')) out.processes.addAll(describeNf(path))
        else out.configs[path] = describeConfig(path, projectDir)
    }
    println(JsonOutput.toJson(out))
} else if (mode == 'render') {
    def specs = new JsonSlurper().parse(new File(args[1]))
    def results = []
    int status = 0
    specs.each { spec ->
        try {
            results << render(spec)
        } catch (Exception e) {
            System.err.println("${spec.process}: ${e.class.simpleName}: ${e.message?.readLines()?.take(2)?.join(' ')}")
            results << [process: spec.process, error: "${e.class.simpleName}: ${e.message}".toString()]
            status = 1
        }
    }
    println(JsonOutput.toJson(results))
    System.exit(status)
} else {
    System.err.println('usage: groovy nf_process.groovy describe FILE... | render SPEC.json')
    System.exit(2)
}
