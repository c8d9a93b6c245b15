// Parse Nextflow (.nf) and config files with the Groovy compiler up to the CONVERSION phase
// (syntax errors fail here) and print, one per line, what the static checks need:
//   PROCESS <name>, WORKFLOW <name>, INCLUDE <name> <alias> <path>, CALL <name>,
//   GLOBAL_ASSIGN <name> <line>   a closure inside a workflow/process assigns a variable it did not
//                                 declare (a global: breaks -resume and parallel runs),
//   MERGE <line>                  an order-dependent channel merge (use join)
// Usage: groovy nf_ast.groovy FILE...   (exit 1 with the compiler's message on a syntax error)
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.Phases

class Walker extends CodeVisitorSupport {
    List<String> out = []
    Set<MethodCallExpression> definitions = [] as Set

    private static String firstName(Expression args) {
        def list = (args instanceof ArgumentListExpression) ? args.expressions : [args]
        if (!list) return null
        def e = list[0]
        if (e instanceof MethodCallExpression) return e.methodAsString
        if (e instanceof VariableExpression) return e.name
        if (e instanceof ConstantExpression) return e.value?.toString()
        return null
    }

    private void includes(Expression closureArgs, String path) {
        def list = (closureArgs instanceof ArgumentListExpression) ? closureArgs.expressions : [closureArgs]
        list.each { c ->
            if (c instanceof ClosureExpression) {
                c.code.visit(new CodeVisitorSupport() {
                    void visitVariableExpression(VariableExpression v) { out << "INCLUDE ${v.name} ${v.name} ${path}" }
                    void visitCastExpression(CastExpression cast) {
                        def src = cast.expression instanceof VariableExpression ? cast.expression.name : cast.expression.text
                        out << "INCLUDE ${src} ${cast.type.name} ${path}"
                    }
                })
            }
        }
    }

    void visitMethodCallExpression(MethodCallExpression call) {
        def name = call.methodAsString
        if (name == 'from' && call.objectExpression instanceof MethodCallExpression
                && call.objectExpression.methodAsString == 'include') {
            def path = firstName(call.arguments)
            includes(call.objectExpression.arguments, path)
        } else if (name == 'process' || name == 'workflow') {
            def target = firstName(call.arguments)
            if (target != null) out << "${name.toUpperCase()} ${target}"
            def list = (call.arguments instanceof ArgumentListExpression) ? call.arguments.expressions : []
            if (list && list[0] instanceof MethodCallExpression) definitions << list[0]
        } else if (name != null && name ==~ /[A-Z][A-Z0-9_]*/ && !definitions.contains(call)) {
            out << "CALL ${name}"
        }
        super.visitMethodCallExpression(call)
    }
}

/** Assignments in closures (operator bodies) to names the closure did not declare. */
class ClosureAssignments extends CodeVisitorSupport {
    List<String> out
    Set<String> declared = [] as Set
    boolean body = true   // a workflow/process body itself: its own assignments are channel wiring

    void visitDeclarationExpression(DeclarationExpression d) {
        if (d.isMultipleAssignmentDeclaration()) d.tupleExpression.expressions.each { declared << it.name }
        else declared << d.variableExpression.name
        d.rightExpression.visit(this)
    }

    void visitBinaryExpression(BinaryExpression b) {
        if (!body && b.operation.text.endsWith('=') && !(b.operation.text in ['==', '!=', '<=', '>='])
                && b.leftExpression instanceof VariableExpression && !(b.leftExpression.name in declared)) {
            out << "GLOBAL_ASSIGN ${b.leftExpression.name} ${b.lineNumber}"
        }
        super.visitBinaryExpression(b)
    }

    void visitClosureExpression(ClosureExpression c) {
        def inner = new ClosureAssignments(out: out, declared: new HashSet(declared), body: false)
        inner.declared << 'it'
        c.parameters?.each { inner.declared << it.name }
        c.code.visit(inner)
    }

    void visitMethodCallExpression(MethodCallExpression call) {
        if (call.methodAsString == 'merge' && !call.implicitThis) out << "MERGE ${call.lineNumber}"
        super.visitMethodCallExpression(call)
    }
}

/** The body closure of `workflow NAME { }`, `workflow { }` or `process NAME { }`, else null. */
ClosureExpression definitionBody(MethodCallExpression call) {
    if (!(call.methodAsString in ['workflow', 'process'])) return null
    def args = (call.arguments instanceof ArgumentListExpression) ? call.arguments.expressions : []
    if (!args) return null
    if (args[0] instanceof ClosureExpression) return args[0]
    if (args[0] instanceof MethodCallExpression) {
        def inner = args[0].arguments
        def list = (inner instanceof ArgumentListExpression) ? inner.expressions : []
        return list.find { it instanceof ClosureExpression }
    }
    null
}

int status = 0
args.each { path ->
    def unit = new CompilationUnit()
    unit.addSource(new File(path))
    try {
        unit.compile(Phases.CONVERSION)
    } catch (CompilationFailedException e) {
        System.err.println("${path}: ${e.message.readLines().findAll { it.trim() }.take(3).join(' ')}")
        status = 1
        return
    }
    def walker = new Walker()
    unit.AST.modules.each { module ->
        module.statementBlock.visit(walker)
        module.classes.each { cls -> cls.methods.each { m -> m.code?.visit(walker) } }
    }
    if (path.endsWith('.nf')) {
        unit.AST.modules.each { module ->
            module.statementBlock.statements.each { st ->
                if (st instanceof org.codehaus.groovy.ast.stmt.ExpressionStatement && st.expression instanceof MethodCallExpression) {
                    def body = definitionBody(st.expression)
                    if (body != null) body.code.visit(new ClosureAssignments(out: walker.out))
                }
            }
        }
    }
    println("FILE ${path}")
    walker.out.unique().each { println(it) }
}
System.exit(status)
